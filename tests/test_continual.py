"""Continual learning's pieces: scenarios, the reservoir, the replay batches and loss, metrics."""

from types import SimpleNamespace

import keras
import numpy as np
import pytest
from scipy import stats

from kapps.errors import ConfigError
from pipelines.continual.buffer import ReservoirBuffer
from pipelines.continual.ewc import consolidate, fisher_diagonal, release
from pipelines.continual.metrics import average_accuracy, backward_transfer, forgetting
from pipelines.continual.replay import ContinualLoss, OfferToBuffer, ReplayBatches, target_rows
from pipelines.continual.scenarios import logit_mask, make_tasks, task_rows


def settings(**overrides):
    base = dict(
        scenario="class_il", domain="permuted", tasks=5, classes_per_task=2, order=None, seed=0
    )
    return SimpleNamespace(**{**base, **overrides})


def test_reservoir_keeps_every_example_with_equal_probability():
    stream, capacity, repeats = 200, 20, 500
    kept = np.zeros(stream)
    for seed in range(repeats):
        buffer = ReservoirBuffer(capacity, seed=seed)
        for start in range(0, stream, 16):  # offered in batches, as training does
            ids = np.arange(start, min(start + 16, stream))
            buffer.add(id=ids)
        assert len(buffer) == capacity and buffer.seen == stream
        kept[buffer.data["id"]] += 1
    # each example kept with probability capacity / stream: 50 times of 500
    assert stats.chisquare(kept).pvalue > 0.001
    early, late = kept[:100].mean(), kept[100:].mean()
    assert abs(early - late) < 5


def test_reservoir_sample_draws_distinct_kept_examples():
    buffer = ReservoirBuffer(10, seed=0)
    buffer.add(id=np.arange(4), x=np.ones((4, 3)))
    drawn = buffer.sample(8)
    assert len(drawn["id"]) == 4 and len(set(drawn["id"])) == 4 and drawn["x"].shape == (4, 3)


def test_split_tasks_follow_the_order_and_refuse_too_many():
    tasks = make_tasks(settings(order=[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]), 10, (8, 8, 1))
    assert [t.classes for t in tasks] == [(9, 8), (7, 6), (5, 4), (3, 2), (1, 0)]
    labels = np.array([0, 9, 8, 3, 9])
    assert task_rows(labels, tasks[0]).tolist() == [1, 2, 4]
    with pytest.raises(ConfigError, match="6 tasks of 2 classes need 12 classes"):
        make_tasks(settings(tasks=6), 10, (8, 8, 1))
    with pytest.raises(ConfigError, match="distinct class ids"):
        make_tasks(settings(order=[0, 0, 1]), 10, (8, 8, 1))


def test_domain_tasks_hold_every_class_through_their_own_transform():
    images = np.random.default_rng(0).integers(0, 255, (3, 8, 8, 1)).astype("float32")
    permuted = make_tasks(settings(scenario="domain_il", tasks=3), 10, (8, 8, 1))
    assert all(t.classes == tuple(range(10)) for t in permuted)
    views = [t.view(images) for t in permuted]
    assert not np.array_equal(views[0], views[1])
    for view in views:  # a permutation of each image's pixels
        assert np.array_equal(np.sort(view.reshape(3, -1)), np.sort(images.reshape(3, -1)))
    rotated = make_tasks(settings(scenario="domain_il", domain="rotated", tasks=2), 10, (8, 8, 1))
    assert all(0 <= t.angle < 180 for t in rotated) and rotated[0].angle != rotated[1].angle
    assert rotated[0].view(images).shape == images.shape


def test_class_il_scores_classes_seen_so_far_and_task_il_the_task_own():
    tasks = make_tasks(settings(), 10, (8, 8, 1))
    assert np.flatnonzero(logit_mask(tasks, 0, 2, "class_il", 10)).tolist() == list(range(6))
    assert np.flatnonzero(logit_mask(tasks, 1, 4, "task_il", 10)).tolist() == [2, 3]
    assert logit_mask(tasks, 1, 0, "domain_il", 10).all()


def test_metrics_of_a_known_accuracy_matrix():
    matrix = np.array([[0.9, 0.0, 0.0], [0.5, 0.8, 0.1], [0.3, 0.6, 0.7]])
    np.testing.assert_allclose(average_accuracy(matrix), [0.9, 0.65, (0.3 + 0.6 + 0.7) / 3])
    # forgetting: task 0 best 0.9 → 0.3 (0.6); task 1 best 0.8 → 0.6 (0.2)
    assert forgetting(matrix) == pytest.approx(0.4)
    assert backward_transfer(matrix) == pytest.approx(((0.3 - 0.9) + (0.6 - 0.8)) / 2)


def test_the_loss_sums_each_term_with_its_weight():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 5)).astype("float32")
    target = rng.normal(size=(4, 5)).astype("float32")
    labels = np.array([0, 1, 2, 3])
    loss = ContinualLoss(5)
    ce = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    ce = keras.ops.convert_to_numpy(ce)
    rows = target_rows(labels, 5, ce=0.25)
    assert float(loss(rows, logits)) == pytest.approx(ce.mean(), rel=1e-5)
    rows = target_rows(labels, 5, mse=0.5, logits=target)
    assert float(loss(rows, logits)) == pytest.approx(0.5 * ((logits - target) ** 2).mean(1).sum())
    mask = np.array([1, 1, 0, 0, 0], dtype="float32")
    rows = target_rows(labels, 5, kd=1.0, logits=target, kd_mask=mask)
    t = 2.0
    soft = np.exp(target[:, :2] / t) / np.exp(target[:, :2] / t).sum(1, keepdims=True)
    log_p = logits[:, :2] / t - np.log(np.exp(logits[:, :2] / t).sum(1, keepdims=True))
    assert float(loss(rows, logits)) == pytest.approx(-(soft * log_p).sum() * t * t, rel=1e-4)


def _batches(method, buffer, **kwargs):
    images = np.arange(40 * 4, dtype="float32").reshape(40, 2, 2, 1)
    labels = np.arange(40) % 2
    return ReplayBatches(
        images, labels, num_classes=4, batch_size=8, method=method, buffer=buffer, **kwargs
    )


@pytest.mark.parametrize("method", ["er", "der", "derpp"])
def test_replay_batches_keep_one_shape_and_weigh_each_term(method):
    buffer = ReservoirBuffer(50, seed=0)
    batches = _batches(method, buffer, alpha=0.3, beta=0.5)
    draws = 2 if method == "derpp" else 1
    images, targets = batches[0]  # empty buffer: padding with zero weight
    assert images.shape == (8 + 8 * draws, 2, 2, 1)
    assert targets[:, 1].sum() == pytest.approx(1.0) and targets[8:, 1:4].sum() == 0
    buffer.add(image=np.ones((20, 2, 2, 1)), label=np.full(20, 3), logits=np.ones((20, 4)))
    images, targets = batches[1]
    assert images.shape == (8 + 8 * draws, 2, 2, 1)
    if method == "er":  # one mean over the 16 examples
        np.testing.assert_allclose(targets[:, 1], 1 / 16)
    else:
        assert targets[:8, 1].sum() == pytest.approx(1.0)
        assert targets[8:16, 2].sum() == pytest.approx(0.3)  # α over the logit matches
        np.testing.assert_array_equal(targets[8:16, 4:8], 1.0)
    if method == "derpp":
        assert targets[16:, 1].sum() == pytest.approx(0.5) and (targets[16:, 0] == 3).all()


def test_lwf_distils_the_old_model_on_earlier_classes_from_the_second_task():
    first = _batches("lwf", None)
    _, targets = first[0]
    assert targets[:, 1].sum() == pytest.approx(1.0) and targets[:, 3].sum() == 0
    old = np.arange(40 * 4, dtype="float32").reshape(40, 4)
    later = _batches("lwf", None, old_logits=old, old_classes=[0, 1], lwf_lambda=2.0)
    _, targets = later[0]
    assert targets[:, 3].sum() == pytest.approx(2.0)
    np.testing.assert_array_equal(targets[:, 4:8], old[later.rows(0)])
    np.testing.assert_array_equal(targets[:, 8:], [[1, 1, 0, 0]] * 8)


def test_der_keeps_the_logits_of_the_moment_an_example_was_seen():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((2, 2, 1)), keras.layers.Flatten(), keras.layers.Dense(4)]
    )
    model.compile(keras.optimizers.SGD(1e-4), loss=ContinualLoss(4))
    buffer = ReservoirBuffer(100, seed=0)
    batches = _batches("der", buffer)
    seen = {}  # image → the model's logits when its step began

    class Watch(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            images = batches.images[batches.rows(batch)]
            logits = keras.ops.convert_to_numpy(self.model(images))
            seen.update(zip(map(bytes, images), logits, strict=True))

    offer = OfferToBuffer(batches, buffer, task=0)
    model.fit(batches, epochs=1, verbose=0, shuffle=False, callbacks=[Watch(), offer])
    assert buffer.seen == 40 == len(seen)
    kept = len(buffer)
    for image, logits in zip(
        buffer.data["image"][:kept], buffer.data["logits"][:kept], strict=True
    ):
        np.testing.assert_allclose(logits, seen[bytes(image)], rtol=1e-5)
    before = np.stack([seen[bytes(image)] for image in batches.images])
    after = keras.ops.convert_to_numpy(model(batches.images))
    assert not np.allclose(after, before)  # the model moved on; the buffer did not


def _dense():
    keras.utils.set_random_seed(1)
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(4)])


def test_fisher_is_the_mean_squared_log_likelihood_gradient():
    model = _dense()
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 3)).astype("float32"), np.array([0, 1, 2, 3, 1])
    kernel_fisher, bias_fisher = fisher_diagonal(model, x, y)
    probs = keras.ops.convert_to_numpy(keras.ops.softmax(model(x)))
    residual = np.eye(4)[y] - probs  # ∂ log p_y / ∂ logits
    expected_kernel = np.mean([np.outer(x[i], residual[i]) ** 2 for i in range(5)], axis=0)
    np.testing.assert_allclose(kernel_fisher, expected_kernel, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(bias_fisher, np.mean(residual**2, axis=0), rtol=1e-4, atol=1e-7)


def test_online_ewc_pulls_towards_the_anchor_with_the_decayed_fisher():
    model = _dense()
    kernel, bias = model.trainable_variables
    ones = [np.ones(kernel.shape), np.ones(bias.shape)]
    consolidate(model, ones, gamma=0.5, strength=4.0)
    assert float(keras.ops.sum(model.losses)) == pytest.approx(0.0)
    anchor = keras.ops.convert_to_numpy(kernel.value)
    kernel.assign(anchor + 0.1)
    # 4 / 2 · Σ 1 · 0.1² over 12 kernel weights
    assert float(keras.ops.sum(model.losses)) == pytest.approx(2.0 * 12 * 0.01, rel=1e-4)
    consolidate(model, [2 * f for f in ones], gamma=0.5, strength=4.0)
    np.testing.assert_allclose(kernel.regularizer.fisher, 0.5 * 1 + 2)  # γ · F₁ + F₂
    release(model)
    assert not model.losses
