"""The encoder–decoder Transformer: the paper's sizes, its masks, its cache, its decoding."""

import keras
import numpy as np
import pytest

import kapps
from kapps.layers.transformer import SinusoidalPositions
from pipelines.generate import length_penalty, translate

PAD, START, END = 0, 1, 2


def tiny(vocab_size=13, **overrides):
    keras.utils.set_random_seed(0)
    args = {"hidden_dim": 32, "dropout": 0.0, **overrides}
    return kapps.create_model("transformer_tiny", vocab_size=vocab_size, **args)


def logits(model, sources, targets):
    inputs = {"encoder_token_ids": np.asarray(sources), "decoder_token_ids": np.asarray(targets)}
    return keras.ops.convert_to_numpy(model(inputs, training=False))


@pytest.mark.parametrize(
    ("name", "count"), [("transformer_base", 63_082_496), ("transformer_big", 214_245_376)]
)
def test_the_papers_models_have_their_parameter_count(name, count):
    """Table 3: 65 M and 213 M. With one shared 37,000-token vocabulary, by hand:
    6 encoder blocks of 4(d² + d) + 2 d d_ff + d_ff + d + 4d, 6 decoder blocks with
    another attention and LayerNorm, and the 37,000 × d embedding once."""
    d, ff = {"transformer_base": (512, 2048), "transformer_big": (1024, 4096)}[name]
    encoder = 4 * (d * d + d) + 2 * d * ff + ff + d + 4 * d
    decoder = encoder + 4 * (d * d + d) + 2 * d
    assert 6 * encoder + 6 * decoder + 37_000 * d == count
    model = kapps.create_model(name)
    assert model.count_params() == count


def test_separate_embeddings_add_the_source_matrix_and_an_output_projection():
    shared = tiny(vocab_size=20)
    separate = tiny(vocab_size=20, share_embeddings=False, source_vocab_size=30, tie_weights=False)
    assert separate.count_params() - shared.count_params() == 30 * 32 + 20 * 32


def test_positions_are_the_papers_sinusoids():
    dim, length, start = 8, 5, 3
    table = keras.ops.convert_to_numpy(
        SinusoidalPositions()(np.zeros((1, length, dim)), start=start)
    )[0]
    pos = np.arange(start, start + length)[:, None]
    i = np.arange(dim // 2)[None, :]
    np.testing.assert_allclose(table[:, 0::2], np.sin(pos / 10000 ** (2 * i / dim)), atol=1e-6)
    np.testing.assert_allclose(table[:, 1::2], np.cos(pos / 10000 ** (2 * i / dim)), atol=1e-6)


def test_every_sublayer_ends_in_a_layer_norm():
    """Post-LayerNorm: with LayerNorm's initial scale 1 and shift 0, each block's
    output has mean 0 and variance 1 at every position."""
    model = tiny()
    rng = np.random.default_rng(0)
    encoded, _ = model.encode(rng.integers(3, 13, (2, 6)))
    out = keras.ops.convert_to_numpy(encoded)
    np.testing.assert_allclose(out.mean(-1), 0, atol=1e-5)
    np.testing.assert_allclose(out.var(-1), 1, atol=1e-3)


def test_a_decoder_position_never_sees_a_later_target_token():
    model = tiny()
    rng = np.random.default_rng(1)
    sources, targets = rng.integers(3, 13, (2, 6)), rng.integers(3, 13, (2, 7))
    before = logits(model, sources, targets)
    changed = targets.copy()
    changed[:, 4:] = rng.integers(3, 13, (2, 3))
    after = logits(model, sources, changed)
    np.testing.assert_allclose(before[:, :4], after[:, :4], atol=1e-5)
    assert not np.allclose(before[:, 4:], after[:, 4:], atol=1e-3)


def test_cross_attention_sees_every_source_token_and_no_padding():
    model = tiny()
    rng = np.random.default_rng(2)
    sources, targets = rng.integers(3, 13, (1, 6)), rng.integers(3, 13, (1, 5))
    before = logits(model, sources, targets)
    for position in range(6):  # each real source token reaches every target position
        changed = sources.copy()
        changed[0, position] = 3 + (changed[0, position] - 2) % 10
        moved = np.abs(logits(model, changed, targets) - before).max(axis=-1)[0]
        assert (moved > 1e-4).all()
    padded = np.pad(sources, ((0, 0), (0, 4)))  # the same source, padded
    np.testing.assert_allclose(logits(model, padded, targets), before, atol=1e-5)


def test_cross_attention_weights_sum_to_one_over_the_real_source_tokens():
    model = tiny()
    rng = np.random.default_rng(4)
    sources, targets = rng.integers(3, 13, (2, 6)), rng.integers(3, 13, (2, 4))
    sources[0, 3:] = PAD
    for layer in (0, -1):
        weights = keras.ops.convert_to_numpy(model.cross_attention(sources, targets, layer))
        assert weights.shape == (2, 4, 4, 6)  # batch, heads, target, source
        np.testing.assert_allclose(weights.sum(-1), 1, atol=1e-5)
        assert (weights[0, :, :, 3:] < 1e-6).all() and (weights[0, :, :, :3] > 0).all()


def test_the_cached_decoder_gives_the_uncached_logits():
    model = tiny()
    rng = np.random.default_rng(3)
    sources = rng.integers(3, 13, (3, 7))
    sources[0, 4:] = PAD
    targets = rng.integers(3, 13, (3, 6))
    targets[:, 0] = START
    full = logits(model, sources, targets)
    prompt_mask = np.zeros(targets.shape, bool)
    prompt_mask[:, 0] = True
    cache, _, start = model.build_cache(sources, targets * prompt_mask, prompt_mask)
    assert int(start) == 1
    steps = []
    for index in range(targets.shape[1]):
        step, _, cache = model.call_with_cache(targets[:, index : index + 1], cache, index)
        steps.append(keras.ops.convert_to_numpy(step)[:, 0])
    np.testing.assert_allclose(np.stack(steps, axis=1), full, atol=1e-4)


def test_the_length_penalty_is_gnmts():
    assert length_penalty([1], 0.0)[0] == 1.0
    np.testing.assert_allclose(length_penalty([1, 7], 0.6), [1.0, 2.0**0.6])


def test_decoding_refuses_an_empty_source():
    with pytest.raises(ValueError, match="at least one token"):
        translate(tiny(), [[3, 4], []], 5, start_id=START, end_id=END)


def copy_examples(rng, count, vocab_size):
    """Sources of 3–6 tokens; the decoder reads START + copy, writes copy + END."""
    lengths = rng.integers(3, 7, count)
    sources = np.zeros((count, 6), "int32")
    inputs, outputs = np.zeros((count, 7), "int32"), np.zeros((count, 7), "int32")
    for row, length in enumerate(lengths):
        tokens = rng.integers(3, vocab_size, length)
        sources[row, :length] = tokens
        inputs[row, 0], inputs[row, 1 : length + 1] = START, tokens
        outputs[row, :length], outputs[row, length] = tokens, END
    return sources, inputs, outputs


def test_greedy_and_beam_search_return_the_exact_copy_on_a_copy_task():
    vocab_size = 13
    model = tiny(vocab_size, hidden_dim=64)
    rng = np.random.default_rng(0)
    sources, inputs, outputs = copy_examples(rng, 6144, vocab_size)
    model.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=PAD),
    )
    model.fit(
        {"encoder_token_ids": sources, "decoder_token_ids": inputs},
        outputs,
        batch_size=64,
        epochs=3,
        verbose=0,
    )
    held_out = [[int(t) for t in row if t] for row in copy_examples(rng, 40, vocab_size)[0]]
    for sampler in ("greedy", "beam"):
        decoded = translate(model, held_out, 8, start_id=START, end_id=END, sampler=sampler)
        assert decoded == held_out
