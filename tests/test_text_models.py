"""GPT and char-RNN: parameter counts, cached = uncached forward, generation."""

import keras
import numpy as np
import pytest

import kapps
from kapps.errors import ConfigError
from pipelines.generate import SAMPLERS, generate, make_sampler

VOCAB = 29


@pytest.fixture(scope="module")
def tiny_gpt():
    keras.utils.set_random_seed(0)
    return kapps.create_model("gpt_nano", vocab_size=VOCAB, max_length=24)


@pytest.fixture(scope="module")
def tiny_rnn():
    keras.utils.set_random_seed(0)
    return kapps.create_model("char_rnn", vocab_size=VOCAB, units=16, embedding_dim=8)


def test_gpt2_small_has_exactly_the_parameters_of_keras_hub_gpt2_backbone():
    keras_hub = pytest.importorskip("keras_hub")
    reference = keras_hub.models.GPT2Backbone(
        vocabulary_size=50257,
        num_layers=12,
        num_heads=12,
        hidden_dim=768,
        intermediate_dim=3072,
        max_sequence_length=1024,
    )
    ours = kapps.create_model("gpt2_small")
    assert ours.count_params() == reference.count_params() == 124_439_808


def test_untied_output_adds_one_matrix_without_bias():
    tied = kapps.create_model("gpt_nano", vocab_size=VOCAB)
    untied = kapps.create_model("gpt_nano", vocab_size=VOCAB, tie_weights=False)
    assert untied.count_params() - tied.count_params() == VOCAB * 48


def test_gpt_cached_forward_equals_the_full_forward(tiny_gpt):
    ids = np.random.default_rng(0).integers(0, VOCAB, (3, 20)).astype("int32")
    full = np.asarray(tiny_gpt(ids))
    cache, _, _ = tiny_gpt.build_cache(ids[:, :7], np.ones((3, 7), bool))
    # Prefill 7 tokens into a cache as long as the sequence, then one at a time.
    pad = np.zeros((3, tiny_gpt.num_layers, 2, 20, 3, 16), "float32")
    pad[:, :, :, :7] = np.asarray(cache)
    steps, cache = [], pad
    for i in range(7, 20):
        logits, _, cache = tiny_gpt.call_with_cache(ids[:, i : i + 1], cache, i)
        steps.append(np.asarray(logits)[:, 0])
    np.testing.assert_allclose(np.stack(steps, axis=1), full[:, 7:], atol=1e-5)
    prefill_logits, _, _ = tiny_gpt.call_with_cache(ids, np.zeros_like(pad), 0)
    np.testing.assert_allclose(np.asarray(prefill_logits), full, atol=1e-5)


def test_char_rnn_state_cache_equals_the_full_forward(tiny_rnn):
    ids = np.random.default_rng(1).integers(0, VOCAB, (2, 12)).astype("int32")
    full = np.asarray(tiny_rnn(ids))
    cache, _, start = tiny_rnn.build_cache(ids, np.ones_like(ids, bool))
    assert start == 1
    steps = []
    for i in range(12):
        logits, _, cache = tiny_rnn.call_with_cache(ids[:, i : i + 1], cache, i)
        steps.append(np.asarray(logits)[:, 0])
    np.testing.assert_allclose(np.stack(steps, axis=1), full, atol=1e-5)


@pytest.mark.parametrize("model_name", ["tiny_gpt", "tiny_rnn"])
def test_greedy_generation_is_the_same_with_and_without_the_cache(model_name, request):
    model = request.getfixturevalue(model_name)
    prompts = [[1, 2, 3, 4], [5, 6]]  # ragged: padded and masked together
    cached = generate(model, prompts, 10)
    uncached = generate(model, prompts, 10, use_cache=False)
    assert cached == uncached
    assert [len(row) for row in cached] == [10, 10]
    # Each row continues its own prompt: alone it gives the same tokens.
    assert generate(model, [prompts[1]], 10) == [cached[1]]


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_generates_in_the_vocabulary(tiny_gpt, sampler):
    out = generate(tiny_gpt, [[1, 2, 3]], 8, sampler, seed=3, temperature=0.7)
    assert len(out[0]) == 8 and all(0 <= t < VOCAB for t in out[0])


def test_seeded_sampling_repeats_and_stream_sees_every_token(tiny_gpt):
    # Streaming runs step by step, batches run compiled: each repeats with its seed.
    streamed = []
    first = generate(tiny_gpt, [[1, 2]], 12, "top_k", seed=7, stream=streamed.append)
    assert streamed == first[0]
    assert generate(tiny_gpt, [[1, 2]], 12, "top_k", seed=7, stream=lambda t: None) == first
    compiled = generate(tiny_gpt, [[1, 2]], 12, "top_k", seed=7)
    assert generate(tiny_gpt, [[1, 2]], 12, "top_k", seed=7) == compiled


def test_generation_beyond_the_context_slides_the_window(tiny_gpt):
    # Context 24: a 30-token prompt and 40 new tokens still work.
    prompt = list(np.random.default_rng(2).integers(0, VOCAB, 30))
    out = generate(tiny_gpt, [prompt], 40)
    assert len(out[0]) == 40
    # The first token only depends on the last 23 prompt tokens.
    assert generate(tiny_gpt, [prompt[-23:]], 1)[0] == out[0][:1]


def test_char_rnn_has_no_context_limit(tiny_rnn):
    assert len(generate(tiny_rnn, [[1]], 60)[0]) == 60


def test_bad_sizes_and_samplers_are_clear_errors():
    with pytest.raises(ConfigError, match="divisible"):
        kapps.create_model("gpt_nano", hidden_dim=50, num_heads=3)
    with pytest.raises(ConfigError, match="cell"):
        kapps.create_model("char_rnn", cell="transformer")
    with pytest.raises(ValueError, match="sampler"):
        make_sampler("nucleus")
    with pytest.raises(ValueError, match="at least one token"):
        generate(kapps.create_model("char_rnn", units=4), [[]], 3)
