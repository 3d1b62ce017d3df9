"""The one transformer block behind ViT, Segmenter, GPT and CLIP's text tower."""

import keras
import numpy as np
import pytest
from keras import ops

import kapps
from kapps.layers import TransformerBlock

TINY = {
    "vit_tiny16": {"input_shape": (32, 32, 3), "num_classes": 3},
    "segmenter_tiny16": {"input_shape": (32, 32, 3), "num_classes": 3},
    "gpt_nano": {"vocab_size": 11, "max_length": 8},
    "clip_tiny": {"image_shape": (32, 32, 3), "vocab_size": 11, "max_length": 8},
}


def _blocks(model):
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found += _blocks(layer)
        elif isinstance(layer, TransformerBlock):
            found.append(layer)
    return found


@pytest.mark.parametrize("name", TINY)
def test_every_transformer_uses_the_shared_block(name, tmp_path):
    model = kapps.create_model(name, **TINY[name])
    assert _blocks(model)
    assert not any(isinstance(layer, keras.layers.MultiHeadAttention) for layer in model.layers)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert loaded.count_params() == model.count_params()
    for ours, theirs in zip(model.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(ops.convert_to_numpy(ours), ops.convert_to_numpy(theirs))


def test_a_causal_block_does_not_look_ahead():
    block = TransformerBlock(num_heads=2, intermediate_dim=16, causal=True)
    x = np.random.default_rng(0).normal(size=(1, 6, 8)).astype("float32")
    changed = x.copy()
    changed[:, 4:] += 5.0
    before, after = (ops.convert_to_numpy(block(v)) for v in (x, changed))
    np.testing.assert_allclose(before[:, :4], after[:, :4], atol=1e-5)
    assert not np.allclose(before[:, 4:], after[:, 4:])


def test_padded_keys_are_ignored():
    block = TransformerBlock(num_heads=2, intermediate_dim=16)
    x = np.random.default_rng(1).normal(size=(1, 6, 8)).astype("float32")
    mask = np.array([[1, 1, 1, 1, 0, 0]], "int32")
    changed = x.copy()
    changed[:, 4:] = -3.0
    before, after = (ops.convert_to_numpy(block(v, mask)) for v in (x, changed))
    np.testing.assert_allclose(before[:, :4], after[:, :4], atol=1e-5)
    unmasked = ops.convert_to_numpy(block(changed))
    assert not np.allclose(before[:, :4], unmasked[:, :4])


def test_the_cache_gives_the_full_forward():
    block = TransformerBlock(num_heads=2, intermediate_dim=16, causal=True)
    x = np.random.default_rng(2).normal(size=(2, 5, 8)).astype("float32")
    full = ops.convert_to_numpy(block(x))
    cache = ops.zeros((2, 2, 5, 2, 4))
    first, cache = block(x[:, :3], cache=cache, index=0)
    second, _ = block(x[:, 3:], cache=cache, index=3)
    stepped = np.concatenate([ops.convert_to_numpy(first), ops.convert_to_numpy(second)], 1)
    np.testing.assert_allclose(stepped, full, atol=1e-5)
