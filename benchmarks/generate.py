"""Generation speed: kapps GPT with its key/value cache ÷ without, and ÷ keras-hub GPT-2.

The same tiny configuration for all (default: vocabulary 512, 4 layers, 4
heads, width 128, context 512), greedy decoding of `--new` tokens after a
16-token prompt, batch `--batch`. Each generator is compiled by one warm-up
call; then they alternate (the order flips every repeat) and the median of
the repeats is compared. Goals: cache ÷ no cache ≥ 5 at 256 new tokens;
ours ÷ keras-hub `GPT2CausalLM.generate` ≥ 1.0.

    python -m benchmarks.generate [--new 256] [--batch 1] [--repeats 5]
"""

import argparse
import statistics
import time

import keras
import numpy as np

import kapps
from benchmarks.common import Figure, add_figures_argument, write_figures
from pipelines.generate import generate

PROMPT = 16


def _keras_hub_generator(args, jit_compile):
    import keras_hub

    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=args.vocab,
        num_layers=args.layers,
        num_heads=args.heads,
        hidden_dim=args.width,
        intermediate_dim=4 * args.width,
        max_sequence_length=args.context,
        dropout=0.0,
    )
    model = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    model.compile(sampler="greedy", jit_compile=jit_compile)
    length = PROMPT + args.new
    token_ids = np.zeros((args.batch, length), "int32")
    token_ids[:, :PROMPT] = np.random.default_rng(0).integers(1, args.vocab, (args.batch, PROMPT))
    mask = np.zeros((args.batch, length), bool)
    mask[:, :PROMPT] = True
    inputs = {"token_ids": token_ids, "padding_mask": mask}
    return lambda: model.generate(inputs, stop_token_ids=None), model.count_params()


def _ours_generator(args, use_cache):
    model = kapps.create_model(
        "gpt_nano",
        vocab_size=args.vocab,
        num_layers=args.layers,
        num_heads=args.heads,
        hidden_dim=args.width,
        max_length=args.context,
    )
    prompts = np.random.default_rng(0).integers(1, args.vocab, (args.batch, PROMPT)).tolist()
    return lambda: generate(model, prompts, args.new, "greedy", use_cache=use_cache), (
        model.count_params()
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new", type=int, default=256, help="new tokens per prompt")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--vocab", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--context", type=int, default=512)
    add_figures_argument(parser)
    args = parser.parse_args(argv)
    generators = {
        "kapps, cache": _ours_generator(args, True),
        "kapps, no cache": _ours_generator(args, False),
        "keras-hub GPT2CausalLM (default compile)": _keras_hub_generator(args, "auto"),
        "keras-hub GPT2CausalLM (XLA)": _keras_hub_generator(args, True),
    }
    params = {name: count for name, (_, count) in generators.items()}
    assert len(set(params.values())) == 1, params  # the same network
    for run, _ in generators.values():  # compile
        run()
    times = {name: [] for name in generators}
    names = list(generators)
    for repeat in range(args.repeats):
        for name in names if repeat % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            generators[name][0]()
            times[name].append(time.perf_counter() - start)
    speed = {name: args.batch * args.new / statistics.median(t) for name, t in times.items()}
    ours = speed["kapps, cache"]
    rows = ["| generator | tokens/s | kapps (cache) ÷ this |", "|---|---|---|"]
    rows += [f"| {name} | {value:,.0f} | {ours / value:.2f} |" for name, value in speed.items()]
    print(
        f"{keras.backend.backend()} backend; {params['kapps, cache']:,} parameters; greedy, "
        f"{PROMPT}-token prompt + {args.new} new tokens, batch {args.batch}; median of "
        f"{args.repeats} alternating repeats"
    )
    print("\n".join(rows))
    cache = ours / speed["kapps, no cache"]
    hub = ours / speed["keras-hub GPT2CausalLM (XLA)"]
    figures = [
        Figure(
            f"generation tokens/s, key/value cache ÷ none ({args.new} new tokens)",
            f"{cache:.1f}",
            "≥ 5",
            cache >= 5,
        ),
        Figure(
            "generation tokens/s, kapps ÷ keras-hub GPT2CausalLM.generate (both XLA)",
            f"{hub:.2f} (÷ its default compile: "
            f"{ours / speed['keras-hub GPT2CausalLM (default compile)']:.1f})",
            "≥ 1.0",
            hub >= 1.0,
        ),
    ]
    write_figures(args.figures, figures)
    return rows, figures


if __name__ == "__main__":
    main()
