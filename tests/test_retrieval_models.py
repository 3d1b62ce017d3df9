"""CLIP: parameter parity with keras-hub, the contrastive loss, the encoders, search."""

import math
import tracemalloc

import keras
import numpy as np
import pytest

import kapps
from kapps.retrieval.search import (
    mean_average_precision_at_k,
    ranks_of,
    recall_at_k,
    top_k_search,
)

VOCAB = 30


def _tiny():
    keras.utils.set_random_seed(0)
    return kapps.create_model(
        "clip_tiny",
        image_shape=(32, 32, 3),
        vocab_size=VOCAB,
        max_length=12,
        text_width=16,
        text_layers=2,
        text_heads=2,
        embed_dim=8,
    )


@pytest.fixture(scope="module")
def tiny_clip():
    return _tiny()


def _batch(count=5, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 13, (count, 1))
    mask = (np.arange(12) < lengths).astype("int32")
    return {
        "images": rng.uniform(0, 255, (count, 32, 32, 3)).astype("float32"),
        "token_ids": rng.integers(3, VOCAB, (count, 12)).astype("int32") * mask,
        "padding_mask": mask,
    }


def test_clip_vit_b32_has_keras_hub_clip_backbones_parameters():
    keras_hub = pytest.importorskip("keras_hub")
    reference = keras_hub.models.CLIPBackbone(
        keras_hub.models.CLIPVisionEncoder(32, 768, 12, 12, 3072, image_shape=(224, 224, 3)),
        keras_hub.models.CLIPTextEncoder(49408, 512, 512, 12, 8, 2048, max_sequence_length=77),
        projection_dim=512,
    )
    ours = kapps.create_model("clip_vit_b32")
    assert ours.count_params() == 151_277_313
    trainable = sum(int(np.prod(w.shape)) for w in reference.trainable_weights)
    assert ours.count_params() == trainable  # keras-hub also counts 50 integer position ids


def test_loss_is_the_symmetric_infonce_of_the_logits(tiny_clip):
    batch = _batch()
    logits = np.asarray(tiny_clip(batch), dtype=np.float64)

    def cross_entropy(rows):
        shifted = rows - rows.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return -np.mean(np.diag(log_probs))

    expected = (cross_entropy(logits) + cross_entropy(logits.T)) / 2
    loss = tiny_clip.compute_loss(y_pred=keras.ops.convert_to_tensor(logits.astype("float32")))
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    # Swapping which side is "images" gives the same loss: the loss is symmetric.
    swapped = tiny_clip.compute_loss(y_pred=keras.ops.convert_to_tensor(logits.T.astype("float32")))
    assert float(swapped) == pytest.approx(float(loss), rel=1e-6)


def test_logits_are_the_scaled_cosines_of_the_two_encoders(tiny_clip):
    batch = _batch()
    images = tiny_clip.encode_images(batch["images"])
    texts = tiny_clip.encode_texts(batch["token_ids"], batch["padding_mask"])
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1, atol=1e-5)
    assert tiny_clip.logit_scale() == pytest.approx(1 / 0.07, rel=1e-5)
    expected = tiny_clip.logit_scale() * images @ texts.T
    np.testing.assert_allclose(np.asarray(tiny_clip(batch)), expected, rtol=1e-4, atol=1e-4)


def test_temperature_is_clipped_at_100():
    model = kapps.create_model("clip_tiny", **kapps.get_entry("clip_tiny").test_kwargs)
    model.get_layer("logits").log_scale.assign(math.log(1000.0))
    assert model.logit_scale() == pytest.approx(100.0, rel=1e-5)


def test_padding_does_not_change_a_text_embedding(tiny_clip):
    tokens = np.array([[5, 9, 4, 2]], "int32")
    padded = np.array([[5, 9, 4, 2, 0, 0, 0, 0, 0]], "int32")
    short = tiny_clip.encode_texts(tokens)
    # Whatever sits in the padded positions is masked out.
    junk = np.array([[5, 9, 4, 2, 7, 7, 7, 7, 7]], "int32")
    mask = (padded != 0).astype("int32")
    np.testing.assert_allclose(tiny_clip.encode_texts(padded), short, atol=1e-5)
    np.testing.assert_allclose(tiny_clip.encode_texts(junk, mask), short, atol=1e-5)


def test_a_few_steps_on_one_batch_make_every_pair_find_itself():
    model = _tiny()
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    batch = _batch(8, seed=3)
    first = float(model.evaluate(batch, verbose=0))
    for _ in range(60):
        model.train_on_batch(batch)
    assert float(model.evaluate(batch, verbose=0)) < first / 2
    logits = np.asarray(model(batch))
    assert (np.argmax(logits, axis=1) == np.arange(8)).all()
    assert (np.argmax(logits, axis=0) == np.arange(8)).all()


# Search and ranking ----------------------------------------------------------------


def test_blocked_top_k_equals_brute_force():
    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(203, 6)).astype("float32")
    queries = rng.normal(size=(37, 6)).astype("float32")
    indices, scores = top_k_search(queries, gallery, 7, query_batch=5, gallery_batch=11)
    normal = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    cosine = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ normal.T
    expected = np.argsort(-cosine, axis=1)[:, :7]
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(cosine, expected, 1), atol=1e-6)


def test_search_of_a_100k_gallery_keeps_memory_bounded():
    rng = np.random.default_rng(1)
    gallery = rng.normal(size=(100_000, 32)).astype("float32")
    queries = rng.normal(size=(1_000, 32)).astype("float32")
    tracemalloc.start()
    indices, _ = top_k_search(queries, gallery, 10)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # The whole similarity matrix would be 400 MB; a 256 × 8192 block and its
    # sort keys are about 50 MB whatever the gallery size.
    assert peak < 64e6
    assert indices.shape == (1_000, 10)
    q = queries[:3] / np.linalg.norm(queries[:3], axis=1, keepdims=True)
    brute = q @ (gallery / np.linalg.norm(gallery, axis=1, keepdims=True)).T
    np.testing.assert_array_equal(indices[:3], np.argsort(-brute, axis=1)[:, :10])


def test_ranks_recall_and_map_on_a_hand_made_case():
    gallery = np.array([[1, 0], [0, 1], [-1, 0], [0.8, 0.6]], "float32")
    queries = np.array([[1, 0], [0, 1]], "float32")
    # Query 0 ranks 0, 3, 1, 2; query 1 ranks 1, 3, 0/2.
    ranks = ranks_of(queries, gallery, [[3], [2]])
    assert ranks.tolist() == [2, 4]  # a tie (items 0 and 2 for query 1) counts against it
    assert recall_at_k(ranks, 2) == 0.5
    top, _ = top_k_search(queries, gallery, 3)
    # AP@3 of query 0 with items {0, 1} relevant: hits at 1 and 3 → (1 + 2/3) / 2.
    assert mean_average_precision_at_k(top[:1], [[0, 1]], 3) == pytest.approx(5 / 6)


def test_map_at_k_counts_a_repeated_id_once():
    # Kaggle's apk: a prediction already listed earlier is not a hit again.
    assert mean_average_precision_at_k([[7, 7, 1]], [[7]], 3) == pytest.approx(1.0)
    assert mean_average_precision_at_k([[1, 7, 7]], [[7, 1]], 3) == pytest.approx(1.0)


def test_collapsed_embeddings_rank_last_not_first():
    same = np.ones((10, 4), "float32")
    ranks = ranks_of(same, same, [[i] for i in range(10)])
    assert (ranks == 10).all()
