"""The model registry: `register_model`, `create_model`, `list_models`.

Every builder is registered under one or more names; a family registers one
name per row of its variant table, so `create_model("lenet5_paper")` is the
same function as `create_model("lenet5")` with other defaults.
"""

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import keras

from kapps.errors import ConfigError, UnknownModelError

TASKS = (
    "classification",
    "segmentation",
    "detection",
    "retrieval",
    "text",
    "seq2seq",
    "generation",
)


@dataclass(frozen=True)
class ModelEntry:
    """One registered name: the builder, its task and the defaults of its row."""

    name: str
    task: str
    builder: Callable[..., keras.Model]
    defaults: dict = field(default_factory=dict)
    # Small arguments that build the model in well under a second: the
    # registry-wide test uses them, so each new model is tested on arrival.
    test_kwargs: dict = field(default_factory=dict)
    # Smallest input side the network's strides allow; pipelines upscale to it.
    min_input_size: int = 32
    # `checkpoint(arguments)`: the public ImageNet checkpoint that maps onto the
    # model built with these arguments (a `kapps.pretrained.Checkpoint`), or None.
    checkpoint: Callable[[dict], object] | None = None
    # Why there is none, for the family's "imagenet" error.
    no_checkpoint: str | None = None

    def __call__(self, **kwargs):
        return self.builder(**{**self.defaults, **kwargs})


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    task,
    *,
    variants=None,
    test_kwargs=None,
    min_input_size=32,
    checkpoint=None,
    no_checkpoint=None,
):
    """Decorator registering a builder under its own name or one name per variant.

    Args:
        task: one of `TASKS`.
        variants: optional dict `{name: defaults}`; each key becomes a model name
            whose defaults are merged under the caller's keyword arguments.
            Without it the function's own name is registered.
        test_kwargs: small arguments for the registry-wide test.
        min_input_size: the smallest input side the model accepts.
        checkpoint: `arguments -> kapps.pretrained.Checkpoint | None`, the
            public ImageNet checkpoint of the model these arguments build;
            each one needs an equivalence test against its source.
        no_checkpoint: why the family has no checkpoint (shown to the user).

    Raises:
        ValueError: for an unknown task or a name registered twice.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")

    def decorate(builder):
        rows = variants if variants is not None else {builder.__name__: {}}
        for name, defaults in rows.items():
            if name in _REGISTRY:
                raise ValueError(f"model name {name!r} is already registered")
            _REGISTRY[name] = ModelEntry(
                name,
                task,
                builder,
                dict(defaults),
                dict(test_kwargs or {}),
                min_input_size,
                checkpoint,
                no_checkpoint,
            )
        return builder

    return decorate


def model_arguments(overrides, target):
    """`overrides` without its None values, checked against what `target` takes.

    Raises `ValueError` (which `create_model` reports as a `ConfigError`) for
    an argument `target` (the model class) does not take.
    """
    accepted = set(inspect.signature(target).parameters) - {"self", "args", "kwargs"}
    unknown = sorted(set(overrides) - accepted)
    if unknown:
        raise ValueError(f"unknown argument {unknown[0]!r}; one of {sorted(accepted)}")
    return {k: v for k, v in overrides.items() if v is not None}


def variant_arguments(variants, variant, overrides, target):
    """One row of a variant table with the caller's `model_arguments` on top.

    Example:
    >>> class Net:
    ...     def __init__(self, width, depth=2): ...
    >>> variant_arguments({"small": {"width": 8}}, "small", {"depth": 3, "width": None}, Net)
    {'width': 8, 'depth': 3}
    """
    if variant not in variants:
        raise ValueError(f"unknown variant {variant!r}; one of {sorted(variants)}")
    return {**variants[variant], **model_arguments(overrides, target)}


def list_models(task=None):
    """Sorted names of the registered models, optionally of one task only."""
    return sorted(n for n, e in _REGISTRY.items() if task is None or e.task == task)


def get_entry(name):
    """The `ModelEntry` of a registered name; an `UnknownModelError` otherwise."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownModelError(f"unknown model {name!r}{hint} (see `kapps models`)")
    return _REGISTRY[name]


def min_input_size(name):
    """Smallest input side of a model name (32 for other libraries' models)."""
    return get_entry(name).min_input_size if "/" not in name else 32


def create_model(name, /, weights=None, **kwargs):
    """Build a registered model by name, from random or pretrained weights.

    Names of other libraries resolve here too: `"keras.applications/ResNet50V2"`
    and `"keras_hub/<preset folder on disk>"` (see `kapps.external`).

    `weights`: None, `"imagenet"` (the family's public checkpoint, downloaded
    once into Keras' cache) or a path (a keras.applications `.h5` file, a
    keras-hub preset folder, or a kapps `.keras` file); see `kapps.pretrained`.
    A model with another `num_classes` keeps the pretrained backbone and
    starts a new head.

    Example:
    >>> model = create_model("lenet5", input_shape=(32, 32, 1), num_classes=10)
    >>> model.output_shape
    (None, 10)

    Raises:
        UnknownModelError: the name is not registered (with the closest name).
        ConfigError: an argument the builder does not take.
    """
    from kapps.external import create_external  # imports the builders' helpers

    external = create_external(name, kwargs, weights)
    if external is not None:
        return external
    entry = get_entry(name)
    arguments = {**entry.defaults, **kwargs}
    try:
        inspect.signature(entry.builder).bind(**arguments)
    except TypeError as err:
        raise ConfigError(f"model {name!r}: {err}") from err
    try:
        model = entry(**kwargs)
    except ValueError as err:  # an argument the builder rejects (size, variant, …)
        raise ConfigError(f"model {name!r}: {err}") from err
    if weights is not None:
        from kapps.pretrained import load_weights

        checkpoint = entry.checkpoint(arguments) if entry.checkpoint else None
        load_weights(model, weights, checkpoint, entry.no_checkpoint)
    return model
