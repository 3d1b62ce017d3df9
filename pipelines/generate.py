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

from pipelines.hostcall import host_callback

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


def _blend(logits, prompt, index, prior):
    """Logits of (1 − w) · softmax(logits) + w · `fn(prompt, index)`, for `prior = (w, fn)`:
    `fn` gives the next-token probabilities of another model (a host function)."""
    weight, fn = prior
    other = host_callback(
        lambda ids, i: fn(ids, int(i)).astype("float32"),
        prompt,
        index,
        shape=tuple(logits.shape),
        dtype="float32",
    )
    mixed = (1 - weight) * ops.softmax(ops.cast(logits, "float32")) + weight * other
    return ops.log(ops.maximum(mixed, 1e-30))


def _loop(model, sampler, use_cache, stream=None, prompt_length=None, prior=None):
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
            logits, hidden = logits[:, 0], hidden[:, 0]
        else:
            logits, hidden = ops.take(model(prompt, training=False), index - 1, axis=1), None
        if prior is not None:
            logits = _blend(logits, prompt, index, prior)
        return logits, hidden, cache

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


def _shared_sampler(model, name, args, all_beams=False):
    """One sampler per model and settings, so its compiled loop is reused.

    Its random state restarts at every call: the same seed gives the same text.
    `all_beams`: a beam sampler returns every beam and its log-probability.
    """
    samplers = model.__dict__.setdefault("_kapps_samplers", {})
    key = (name, tuple(sorted(args.items())), all_beams)
    if key not in samplers:
        sampler = make_sampler(name, vocab_size=getattr(model, "vocab_size", None), **args)
        if all_beams:
            sampler.return_all_beams = True
        samplers[key] = (sampler, [ops.convert_to_numpy(v) for v in sampler.variables])
    sampler, initial = samplers[key]
    for variable, value in zip(sampler.variables, initial, strict=True):
        variable.assign(value)
    return sampler


def _compiled(model, sampler, use_cache, prior=None):
    """`_loop` compiled for the backend, kept on the model per sampler (and prior)."""
    return _compile(
        model,
        sampler,
        (use_cache, prior and (prior[0], id(prior[1]))),
        lambda: _loop(model, sampler, use_cache, prior=prior)[0],
        xla=prior is None,  # TensorFlow's host call is not XLA-compilable
    )


def _compile(model, sampler, key, make_run, xla=True):
    """`make_run()` compiled for the backend once per model, sampler and `key`, the way
    keras-hub compiles its own `generate`."""
    store = model.__dict__.setdefault("_kapps_generate", {})
    key = (id(sampler), key)
    if key in store:
        return store[key]
    run = make_run()
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf  # only under the tensorflow backend

        compiled = tf.function(run, jit_compile=xla, autograph=False)
    elif backend == "jax":
        import jax

        def stateless(state, *arrays):
            sampler_values, trainable, non_trainable = state
            mapping = itertools.chain(
                zip(sampler.variables, sampler_values, strict=True),
                zip(model.trainable_variables, trainable, strict=True),
                zip(model.non_trainable_variables, non_trainable, strict=True),
            )
            with keras.StatelessScope(state_mapping=mapping) as scope:
                out = run(*arrays)
            values = [scope.get_current_value(v) for v in sampler.variables]
            pairs = zip(values, sampler.variables, strict=True)
            return out, [new if new is not None else v.value for new, v in pairs]

        jitted = jax.jit(stateless)

        def compiled(*arrays):
            state = (
                [v.value for v in sampler.variables],
                [v.value for v in model.trainable_variables],
                [v.value for v in model.non_trainable_variables],
            )
            out, values = jitted(state, *arrays)
            for variable, value in zip(sampler.variables, values, strict=True):
                variable.assign(value)
            return out
    else:  # torch
        import torch

        def compiled(*arrays):
            with torch.no_grad():
                return run(*arrays)

    store[key] = compiled
    return compiled


def _generate_batch(model, sampler, prompts, new_tokens, use_cache, stream, prior):
    lengths = [len(p) for p in prompts]
    width = max(lengths) + new_tokens
    token_ids = np.zeros((len(prompts), width), "int32")
    mask = np.zeros((len(prompts), width), bool)
    for row, prompt in enumerate(prompts):
        token_ids[row, : len(prompt)] = prompt
        mask[row, : len(prompt)] = True
    eager = stream is not None and len(prompts) == 1 and keras.backend.backend() != "jax"
    if eager and not hasattr(sampler, "num_beams"):
        run, streamed = _loop(model, sampler, use_cache, stream, lengths[0], prior)
        out = ops.convert_to_numpy(run(token_ids, mask))
    else:
        streamed = []
        out = ops.convert_to_numpy(_compiled(model, sampler, use_cache, prior)(token_ids, mask))
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
    prior=None,
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
        prior: `(weight, fn)` to sample from (1 − weight) · the model's next-token
            probabilities + weight · `fn(token_ids, index)`'s, a NumPy function giving
            each row's probabilities for position `index` of `token_ids` (B, V), such
            as an n-gram model's.
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
        return _generate_batch(model, sampler, prompts, max_new_tokens, use_cache, stream, prior)
    # Beyond the context: one prompt at a time, sliding the window. Every compiled call
    # fills the whole window (one shape, one compilation), and what is not needed is cut;
    # a streamed, eager call makes only what it shows.
    results = []
    for prompt in prompts:
        context, new = list(prompt)[-(limit - 1) :], []
        while len(new) < max_new_tokens:
            count = limit - len(context)
            if stream is not None:
                count = min(count, max_new_tokens - len(new))
            piece = _generate_batch(model, sampler, [context], count, use_cache, stream, prior)
            piece = piece[0][: max_new_tokens - len(new)]
            new += piece
            context = (context + piece)[-(limit // 2) :]
        results.append(new)
    return results


def _decode_loop(model, sampler, end_id):
    """A whole decoding for a padded batch: `(source_ids, target_ids, mask) → output`.

    A hypothesis that has written `end_id` (or the padding after it) may only
    write padding next, with probability 1: beam search's finished beams keep
    their score, and greedy rows stop growing.
    """

    def next_token(prompt, cache, index):
        token = ops.slice(prompt, [0, index - 1], [ops.shape(prompt)[0], 1])
        logits, hidden, cache = model.call_with_cache(token, cache, index - 1)
        logits = ops.cast(logits[:, 0], "float32")
        finished = ops.logical_and(
            index > 1, ops.logical_or(token == end_id, token == 0)
        )  # position 0 holds the start token
        only_padding = ops.where(ops.arange(ops.shape(logits)[-1]) == 0, 0.0, -1e9)
        return ops.where(finished, only_padding[None], logits), hidden[:, 0], cache

    def run(source_ids, target_ids, mask):
        cache, hidden, start = model.build_cache(source_ids, target_ids, mask)
        return sampler(
            next=next_token,
            prompt=target_ids,
            cache=cache,
            index=start,
            mask=mask,
            stop_token_ids=(end_id,),
            hidden_states=hidden,
        )

    return run


def length_penalty(lengths, alpha):
    """GNMT's length penalty ((5 + |Y|) / 6)^α (Wu et al. 2016, eq. 14)."""
    return ((5.0 + np.asarray(lengths, "float64")) / 6.0) ** alpha


def _until_end(row, end_id):
    """The tokens of one output row before its end token (or its padding)."""
    row = [int(token) for token in row]
    for stop in (end_id, 0):
        if stop in row:
            row = row[: row.index(stop)]
    return row


def translate(
    model,
    sources,
    max_length,
    *,
    start_id,
    end_id,
    sampler="greedy",
    num_beams=4,
    alpha=0.6,
    batch_size=256,
):
    """Decode each source sequence with an encoder–decoder model (`Transformer`).

    Args:
        model: a model with `build_cache(source_ids, target_ids, mask)` and
            `call_with_cache(token_ids, cache, index)`.
        sources: a list of non-empty lists of source token ids (0 is padding).
        max_length: the most target tokens a row may write (its end token included).
        start_id, end_id: the target's start and end tokens.
        sampler: "greedy" or "beam" (keras-hub's `GreedySampler` / `BeamSampler`).
        num_beams: beams of the beam search.
        alpha: the length penalty's exponent: beam search keeps the finished
            hypothesis of the highest log-probability / `length_penalty(|Y|, alpha)`
            (0: the most probable one).
        batch_size: sources decoded together (one compiled shape per batch width).

    Returns:
        A list with the target token ids of each source, without start and end.
    """
    if any(len(s) == 0 for s in sources):
        raise ValueError("every source needs at least one token")
    beam = sampler == "beam"
    args = {"num_beams": num_beams} if beam else {}
    sampler = _shared_sampler(model, sampler, args, all_beams=beam)
    run = _compile(
        model, sampler, ("translate", end_id), lambda: _decode_loop(model, sampler, end_id)
    )
    # Shortest first, widths rounded up to 16: few shapes, so few compilations.
    order = np.argsort([len(s) for s in sources], kind="stable")
    results = [None] * len(sources)
    for first in range(0, len(sources), batch_size):
        rows = order[first : first + batch_size]
        chunk = [sources[i] for i in rows]
        width = -(-max(len(s) for s in chunk) // 16) * 16
        height = min(batch_size, 2 ** int(np.ceil(np.log2(len(chunk)))))  # padded rows
        source_ids = np.zeros((height, width), "int32")
        for row, source in enumerate(chunk):
            source_ids[row, : len(source)] = source
        source_ids[len(chunk) :] = source_ids[len(chunk) - 1]  # padding rows: the last again
        target_ids = np.zeros((height, max_length + 1), "int32")
        target_ids[:, 0] = start_id
        mask = np.zeros(target_ids.shape, bool)
        mask[:, 0] = True
        out = run(source_ids, target_ids, mask)
        if not beam:
            for i, row in zip(rows, ops.convert_to_numpy(out)[: len(rows), 1:], strict=True):
                results[i] = _until_end(row, end_id)
            continue
        beams, log_probs = (ops.convert_to_numpy(x)[: len(rows)] for x in out)
        for i, candidates, scores in zip(rows, beams[:, :, 1:], log_probs, strict=True):
            hypotheses = [_until_end(c, end_id) for c in candidates]
            lengths = [len(h) + 1 for h in hypotheses]  # the end token counts
            best = np.argmax(scores / length_penalty(lengths, alpha))
            results[i] = hypotheses[best]
    return results
