"""The `tune:` section: an Optuna study's settings and its search space."""

from typing import Any, Literal

from pydantic import Field, model_validator

from pipelines.config.base import Section


class ParamSpace(Section):
    """One searched key of `tune.space`, e.g. `train.lr: {type: float, low: 1e-4, high: 1e-2,
    log: true}`; `when: {model.name: lenet5}` samples it only when that holds."""

    type: Literal["float", "int", "categorical"]  # what is sampled
    low: float | None = None  # float, int: smallest value
    high: float | None = None  # float, int: largest value (inclusive)
    log: bool = False  # float, int: sample on a log scale (low > 0)
    step: float | None = None  # float, int: grid step (not with log)
    choices: list[Any] | None = None  # categorical: the values
    when: dict[str, Any] | None = None  # key → value (or list of values) that must hold

    @model_validator(mode="after")
    def _check(self):
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical entry needs a non-empty `choices` list")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} entry needs `low` and `high`")
        if self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError("a log-scale entry needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("`step` and `log` cannot be used together")
        if self.type == "int" and not (
            float(self.low).is_integer() and float(self.high).is_integer()
        ):
            raise ValueError("an int entry needs whole-number low and high")
        return self


class TuneConfig(Section):
    """`kapps tune`: an Optuna study over `space`; each trial is a run with those values."""

    space: dict[str, ParamSpace] = {}  # config key (e.g. train.lr, model.args.width) → range
    trials: int = Field(20, ge=1)  # trials the study should hold (finished, pruned or failed)
    metric: str | None = None  # per-epoch metric to optimise; None: the task's (val_accuracy…)
    direction: Literal["minimize", "maximize"] | None = None  # None: the task's for its metric
    sampler: Literal["tpe", "random", "cmaes"] = "tpe"  # Optuna sampler
    pruner: Literal["median", "hyperband", "none"] = "median"  # stops unpromising trials early
    epochs: int | None = Field(None, ge=1)  # epochs per trial; None: train.epochs
    startup_trials: int = Field(5, ge=0)  # trials sampled at random and never pruned
    warmup_epochs: int = Field(1, ge=0)  # median pruner: epochs before a trial can be pruned
    seed: int | None = None  # sampler seed; None: train.seed
    heartbeat: int = Field(30, ge=1)  # seconds between a running trial's heartbeats
    max_retry: int = Field(2, ge=0)  # re-queues of a trial whose worker died
