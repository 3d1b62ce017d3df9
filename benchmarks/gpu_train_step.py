"""Training throughput on a GPU under JAX: ResNet-50, ViT-B/16 images/s and MFU; GPT-2 tokens/s.

Runs with `KERAS_BACKEND=jax` and never imports TensorFlow (checked at the
end): the data are synthetic arrays made once on the device, the policy is
`mixed_bfloat16`, and the whole training step (forward, backward, AdamW
update) is one XLA program through `jax.jit`, written with Keras' stateless
API as the Keras guide to JAX training loops does, with the model's state
donated so it is updated in place.

Model-FLOPs utilisation = model FLOPs of a training step ÷ time ÷ the
device's peak dense bf16 FLOP/s. Image models: 3 × 2 × `kapps.count_flops`
(multiply–adds of the forward pass; backward ≈ 2 × forward). GPT: 6 × the
parameters per token + 12 × layers × width × context per token for attention
(the PaLM paper's accounting). Peak figures are the vendors' dense bf16
numbers for the devices listed in PEAK_BF16; elsewhere MFU is not reported.

Goals on an H100: ViT-B/16 ≥ 35 % MFU, ResNet-50 ≥ 2,500 images/s. Without a
GPU the script says so and reports nothing, unless `--cpu` asks for a run at
whatever size is given (the tests use it at tiny sizes).

    KERAS_BACKEND=jax python -m benchmarks.gpu_train_step [--batch 256] [--steps 20]
"""

import argparse
import os
import statistics
import sys
import time
from functools import partial

if __name__ == "__main__":  # as a script; imported (tests), it leaves the environment alone
    os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402

import kapps  # noqa: E402
from benchmarks.common import Figure, add_figures_argument, write_figures  # noqa: E402

PEAK_BF16 = {  # dense bf16 FLOP/s by device name (substring of jax's device_kind)
    "H200": 989e12,
    "H100 PCIe": 756e12,
    "H100 NVL": 835e12,
    "H100": 989e12,  # SXM
    "A100": 312e12,
    "L4": 121e12,
}
GOALS = {"resnet50": ("images/s", 2500), "vit_base16": ("mfu", 0.35)}


def peak_flops(device_kind):
    return next((peak for name, peak in PEAK_BF16.items() if name in device_kind), None)


def _train_step(model, optimizer, loss_fn):
    import jax

    def loss_and_state(trainable, non_trainable, x, y):
        logits, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
        return loss_fn(y, keras.ops.cast(logits, "float32")), non_trainable

    grad_fn = jax.value_and_grad(loss_and_state, has_aux=True)

    @partial(jax.jit, donate_argnums=(0, 1, 2))
    def step(trainable, non_trainable, optimizer_state, x, y):
        (loss, non_trainable), grads = grad_fn(trainable, non_trainable, x, y)
        trainable, optimizer_state = optimizer.stateless_apply(optimizer_state, grads, trainable)
        return trainable, non_trainable, optimizer_state, loss

    return step


def throughput(model, x, y, steps, repeats):
    """Median training steps per second of `model` on the batch (x, y)."""
    import jax

    optimizer = keras.optimizers.AdamW(1e-4)
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    step = _train_step(model, optimizer, loss_fn)
    state = (
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        [v.value for v in optimizer.variables],
    )
    state = (*step(*state, x, y)[:3],)  # compile
    jax.block_until_ready(state)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            *state, loss = step(*state, x, y)
        loss.block_until_ready()
        rates.append(steps / (time.perf_counter() - start))
    if not bool(keras.ops.isfinite(loss)):
        raise RuntimeError(f"{model.name}: the training loss is not finite")
    return statistics.median(rates)


def image_model(name, size, batch, steps, repeats):
    model = kapps.create_model(name, input_shape=(size, size, 3), num_classes=1000)
    flops = 3 * 2 * kapps.count_flops(model)  # per image, forward + backward
    rng = keras.random.SeedGenerator(0)
    x = keras.random.uniform((batch, size, size, 3), 0, 255, seed=rng)
    y = keras.random.randint((batch,), 0, 1000, seed=rng)
    rate = throughput(model, x, y, steps, repeats) * batch
    return rate, flops * rate, model.count_params()


def text_model(name, length, batch, steps, repeats, vocab):
    model = kapps.create_model(name, vocab_size=vocab, max_length=length)
    width = model.get_layer("token_embedding").output_dim
    params = model.count_params() - length * width  # less the position table
    flops = 6 * params + 12 * model.num_layers * width * length  # per token
    rng = keras.random.SeedGenerator(0)
    x = keras.random.randint((batch, length), 0, vocab, seed=rng)
    rate = throughput(model, x, keras.ops.roll(x, -1, axis=1), steps, repeats) * batch * length
    return rate, flops * rate, model.count_params()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-models", default="resnet50,vit_base16")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=256, help="images per step")
    parser.add_argument("--text-model", default="gpt2_small")
    parser.add_argument("--length", type=int, default=1024, help="tokens per sequence")
    parser.add_argument("--text-batch", type=int, default=16, help="sequences per step")
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--steps", type=int, default=20, help="steps per timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cpu", action="store_true", help="run even without a GPU")
    add_figures_argument(parser)
    args = parser.parse_args(argv)
    if keras.backend.backend() != "jax":
        raise SystemExit("run this with KERAS_BACKEND=jax (keras was imported with another)")
    import jax

    device = jax.devices()[0]
    kind = device.device_kind
    if device.platform != "gpu" and not args.cpu:
        print(f"no GPU ({kind}): nothing measured; --cpu runs it here anyway")
        figures = [
            Figure(f"{name}, training on a GPU (JAX, bf16, XLA)", "not measured: no GPU", goal)
            for name, goal in (
                ("ResNet-50 images/s", "≥ 2,500 on an H100"),
                ("ViT-B/16 MFU", "≥ 35 % on an H100"),
                ("GPT-2 small tokens/s", ""),
            )
        ]
        write_figures(args.figures, figures)
        return [], figures
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    peak = peak_flops(kind)
    results = {}
    for name in filter(None, args.image_models.split(",")):
        results[name] = (
            "images/s",
            *image_model(name, args.size, args.batch, args.steps, args.repeats),
        )
    if args.text_model:
        results[args.text_model] = (
            "tokens/s",
            *text_model(
                args.text_model, args.length, args.text_batch, args.steps, args.repeats, args.vocab
            ),
        )
    rows = ["| model | parameters | throughput | TFLOP/s | MFU |", "|---|---|---|---|---|"]
    figures = []
    for name, (unit, rate, flops, params) in results.items():
        mfu = flops / peak if peak else None
        shown = f"{100 * mfu:.1f} %" if mfu is not None else "n/a"
        rows.append(f"| {name} | {params:,} | {rate:,.0f} {unit} | {flops / 1e12:.1f} | {shown} |")
        goal_kind, goal = GOALS.get(name, (None, None))
        if goal_kind == "images/s":
            figures.append(
                Figure(
                    f"{name} training images/s ({kind})",
                    f"{rate:,.0f}",
                    f"≥ {goal:,}",
                    rate >= goal,
                )
            )
        elif goal_kind == "mfu":
            figures.append(
                Figure(
                    f"{name} training MFU ({kind})",
                    shown,
                    f"≥ {goal:.0%}",
                    None if mfu is None else mfu >= goal,
                )
            )
        else:
            figures.append(Figure(f"{name} training {unit} ({kind})", f"{rate:,.0f} (MFU {shown})"))
    tensorflow = "tensorflow" in sys.modules
    print(
        f"{kind}, JAX {jax.__version__}, mixed_bfloat16, XLA; images {args.size}×{args.size} in "
        f"batches of {args.batch}, text {args.text_batch} × {args.length} tokens; median of "
        f"{args.repeats} timings of {args.steps} steps; tensorflow imported: {tensorflow}"
    )
    print("\n".join(rows))
    if tensorflow:
        raise RuntimeError("TensorFlow was imported; this benchmark must run without it")
    write_figures(args.figures, figures)
    return rows, figures


if __name__ == "__main__":
    main()
