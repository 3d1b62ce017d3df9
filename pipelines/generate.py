"""Text generation for kapps language models through `keras_hub.samplers`.

Here, not in kapps/, because it imports keras-hub and, under its backend, TensorFlow.

A model offers `build_cache(token_ids, padding_mask)` and
`call_with_cache(token_ids, cache, index)`; the sampler calls a next-token
function over them. The loop is compiled once per shape the way keras-hub
compiles its own `generate` (`tf.function` with XLA on tensorflow, `jax.jit`
over the variables' values on jax, `no_grad` on torch).

Prompts longer than the model's context, or a prompt plus new tokens beyond
it, slide a window: the model sees the last `max_length // 2` tokens and
generates the rest of the window, then slides again.
"""

import itertools

import keras
import numpy as np
from keras import ops

SAMPLERS = ("greedy", "random", "top_k", "top_p", "beam")


def make_sampler(
    name="greedy",
    *,
    temperature=1.0,
    top_k=40,
    top_p=0.9,
    num_beams=4,
    seed=None,
    vocab_size=None,
):
    """A `keras_hub.samplers` sampler by name (`top_k` is capped at `vocab_size`)."""
    from keras_hub import samplers

    if vocab_size:
        top_k = min(top_k, vocab_size)
    if name == "greedy":
        return samplers.GreedySampler(temperature=temperature)
    if name == "random":
        return samplers.RandomSampler(seed=seed, temperature=temperature)
    if name == "top_k":
        return samplers.TopKSampler(k=top_k, seed=seed, temperature=temperature)
    if name == "top_p":
        return samplers.TopPSampler(p=top_p, seed=seed, temperature=temperature)
    if name == "beam":
        return samplers.BeamSampler(num_beams=num_beams, temperature=temperature)
    raise ValueError(f"unknown sampler {name!r}; one of {SAMPLERS}")


def _loop(model, sampler, use_cache, stream=None, prompt_length=None):
    """The whole generation for a padded batch: `(token_ids, mask) → token_ids`."""
    streamed = []

    def next_token(prompt, cache, index):
        if stream is not None and index - 1 >= prompt_length:
            token = int(prompt[0, index - 1])
            streamed.append(token)
            stream(token)
        if use_cache:
            token = ops.slice(prompt, [0, index - 1], [ops.shape(prompt)[0], 1])
            logits, hidden, cache = model.call_with_cache(token, cache, index - 1)
            return logits[:, 0], hidden[:, 0], cache
        logits = ops.take(model(prompt, training=False), index - 1, axis=1)
        return logits, None, cache

    def run(token_ids, mask):
        if use_cache:
            cache, hidden, start = model.build_cache(token_ids, mask)
        else:
            cache, hidden = ops.zeros((1,)), None
            start = ops.min(ops.sum(ops.cast(mask, "int32"), axis=1))
        return sampler(
            next=next_token,
            prompt=token_ids,
            cache=cache,
            index=start,
            mask=mask,
            hidden_states=hidden,
        )

    return run, streamed


def _shared_sampler(model, name, args):
    """One sampler per model and settings, so its compiled loop is reused.

    Its random state restarts at every call: the same seed gives the same text.
    """
    samplers = model.__dict__.setdefault("_kapps_samplers", {})
    key = (name, tuple(sorted(args.items())))
    if key not in samplers:
        sampler = make_sampler(name, vocab_size=getattr(model, "vocab_size", None), **args)
        samplers[key] = (sampler, [ops.convert_to_numpy(v) for v in sampler.variables])
    sampler, initial = samplers[key]
    for variable, value in zip(sampler.variables, initial, strict=True):
        variable.assign(value)
    return sampler


def _compiled(model, sampler, use_cache):
    """`_loop` compiled for the backend, kept on the model per sampler."""
    store = model.__dict__.setdefault("_kapps_generate", {})
    key = (id(sampler), use_cache)
    if key in store:
        return store[key]
    run, _ = _loop(model, sampler, use_cache)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf  # only under the tensorflow backend

        compiled = tf.function(run, jit_compile=True, autograph=False)
    elif backend == "jax":
        import jax

        def stateless(state, token_ids, mask):
            sampler_values, trainable, non_trainable = state
            mapping = itertools.chain(
                zip(sampler.variables, sampler_values, strict=True),
                zip(model.trainable_variables, trainable, strict=True),
                zip(model.non_trainable_variables, non_trainable, strict=True),
            )
            with keras.StatelessScope(state_mapping=mapping) as scope:
                out = run(token_ids, mask)
            values = [scope.get_current_value(v) for v in sampler.variables]
            pairs = zip(values, sampler.variables, strict=True)
            return out, [new if new is not None else v.value for new, v in pairs]

        jitted = jax.jit(stateless)

        def compiled(token_ids, mask):
            state = (
                [v.value for v in sampler.variables],
                [v.value for v in model.trainable_variables],
                [v.value for v in model.non_trainable_variables],
            )
            out, values = jitted(state, token_ids, mask)
            for variable, value in zip(sampler.variables, values, strict=True):
                variable.assign(value)
            return out
    else:  # torch
        import torch

        def compiled(token_ids, mask):
            with torch.no_grad():
                return run(token_ids, mask)

    store[key] = compiled
    return compiled


def _generate_batch(model, sampler, prompts, new_tokens, use_cache, stream):
    lengths = [len(p) for p in prompts]
    width = max(lengths) + new_tokens
    token_ids = np.zeros((len(prompts), width), "int32")
    mask = np.zeros((len(prompts), width), bool)
    for row, prompt in enumerate(prompts):
        token_ids[row, : len(prompt)] = prompt
        mask[row, : len(prompt)] = True
    eager = stream is not None and len(prompts) == 1 and keras.backend.backend() != "jax"
    if eager and not hasattr(sampler, "num_beams"):
        run, streamed = _loop(model, sampler, use_cache, stream, lengths[0])
        out = ops.convert_to_numpy(run(token_ids, mask))
    else:
        streamed = []
        out = ops.convert_to_numpy(_compiled(model, sampler, use_cache)(token_ids, mask))
    rows = [out[row, n : n + new_tokens].tolist() for row, n in enumerate(lengths)]
    if stream is not None:
        for token in rows[0][len(streamed) :]:
            stream(token)
    return rows


def generate(
    model,
    prompts,
    max_new_tokens,
    sampler="greedy",
    *,
    use_cache=True,
    stream=None,
    **sampler_args,
):
    """Continue each prompt by `max_new_tokens` token ids.

    Args:
        model: a kapps language model (`gpt`, `char_rnn`).
        prompts: a list of non-empty lists of token ids.
        max_new_tokens: tokens to add to each prompt.
        sampler: a name from `SAMPLERS` or a `keras_hub.samplers.Sampler`.
        use_cache: feed one token at a time through the key/value (or state)
            cache; False recomputes the whole sequence for every token.
        stream: called with each new token id of a single prompt as it is
            made (step by step on tensorflow and torch; at the end on jax and
            for beam search).
        **sampler_args: `temperature`, `top_k`, `top_p`, `num_beams`, `seed`.

    Returns:
        A list with the new token ids of each prompt.
    """
    if max_new_tokens < 1:
        return [[] for _ in prompts]
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    if isinstance(sampler, str):
        sampler = _shared_sampler(model, sampler, sampler_args)
    limit = getattr(model, "max_length", None)
    longest = max(len(p) for p in prompts)
    if limit is None or longest + max_new_tokens <= limit:
        return _generate_batch(model, sampler, prompts, max_new_tokens, use_cache, stream)
    # Beyond the context: one prompt at a time, sliding the window.
    results = []
    for prompt in prompts:
        context, new = list(prompt)[-(limit - 1) :], []
        while len(new) < max_new_tokens:
            count = min(max_new_tokens - len(new), limit - len(context))
            piece = _generate_batch(model, sampler, [context], count, use_cache, stream)[0]
            new += piece
            context = (context + piece)[-(limit // 2) :]
        results.append(new)
    return results
