"""Each training step's batch for a continual method, and the loss that reads it.

Every method trains with `model.fit` on the plain classifier: what differs is
the batch and its targets. A batch holds the current task's examples, then
(rehearsal methods) examples drawn from the replay buffer, always at the same
shape (slots the buffer cannot fill yet carry zero weight). Each example's
target row says which terms of the loss it enters, with its weight:

    [label, w_ce, w_mse, w_kd, target logits (C), distillation mask (C)]

- `finetune`, `joint`: cross-entropy on the current examples;
- `er` (experience replay): cross-entropy on current and replayed examples
  alike (one mean over both, as in mammoth);
- `der` (Buzzega et al. 2020): cross-entropy on the current examples plus
  α × the mean squared error between the model's logits and the logits
  stored with each replayed example when it was seen;
- `derpp`: `der` plus β × cross-entropy on a second draw from the buffer;
- `lwf` (Li & Hoiem 2017): cross-entropy plus λ × the distillation loss
  (temperature T, over the classes of earlier tasks) towards the logits the
  model gave the current task's images before it started learning it.

The weights carry each term's normalisation, so the loss is their sum.
"""

import threading

import keras
import numpy as np
from keras import ops

REHEARSAL = ("er", "der", "derpp")


@keras.saving.register_keras_serializable(package="kapps")
class ContinualLoss(keras.losses.Loss):
    """The weighted sum of cross-entropy, logit MSE and distillation over a batch."""

    def __init__(self, num_classes, temperature=2.0, name="continual_loss", **kwargs):
        kwargs.setdefault("reduction", "sum")
        super().__init__(name=name, **kwargs)
        self.num_classes = num_classes
        self.temperature = temperature

    def call(self, y_true, y_pred):
        c, t = self.num_classes, self.temperature
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        labels = ops.cast(y_true[:, 0], "int32")
        w_ce, w_mse, w_kd = y_true[:, 1], y_true[:, 2], y_true[:, 3]
        target, mask = y_true[:, 4 : 4 + c], y_true[:, 4 + c : 4 + 2 * c]
        ce = keras.losses.sparse_categorical_crossentropy(labels, y_pred, from_logits=True)
        mse = ops.mean(ops.square(y_pred - target), axis=-1)
        hidden = (1.0 - mask) * -1e9  # classes outside the distillation
        soft = ops.softmax(target / t + hidden, axis=-1)
        kd = -ops.sum(mask * soft * ops.log_softmax(y_pred / t + hidden, axis=-1), axis=-1) * t * t
        return w_ce * ce + w_mse * mse + w_kd * kd

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "temperature": self.temperature,
        }


def target_rows(labels, num_classes, *, ce=0.0, mse=0.0, kd=0.0, logits=None, kd_mask=None):
    """Target rows (see the module) for examples with these labels and weights."""
    n = len(labels)
    rows = np.zeros((n, 4 + 2 * num_classes), dtype=np.float32)
    rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3] = labels, ce, mse, kd
    if logits is not None:
        rows[:, 4 : 4 + num_classes] = logits
    if kd_mask is not None:
        rows[:, 4 + num_classes :] = kd_mask
    return rows


class ReplayBatches(keras.utils.PyDataset):
    """Batches of one task's examples, with replayed ones from `buffer` after them.

    `rows(i)` names the current examples of batch `i` of this epoch, for the
    callback that offers them to the buffer (`OfferToBuffer`).
    """

    def __init__(
        self,
        images,
        labels,
        *,
        num_classes,
        batch_size,
        method="finetune",
        buffer=None,
        replay_size=None,
        alpha=0.3,
        beta=0.5,
        lwf_lambda=1.0,
        old_logits=None,
        old_classes=(),
        seed=0,
    ):
        super().__init__()
        self.images, self.labels = images, np.asarray(labels)
        self.num_classes, self.batch_size = num_classes, batch_size
        self.method, self.buffer = method, buffer
        self.replay_size = replay_size or batch_size
        self.alpha, self.beta, self.lwf_lambda = alpha, beta, lwf_lambda
        self.old_logits = old_logits
        self.kd_mask = np.isin(np.arange(num_classes), list(old_classes)).astype(np.float32)
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(self.labels))
        self.lock = threading.Lock()

    def __len__(self):
        return max(1, len(self.labels) // self.batch_size)

    def on_epoch_end(self):
        self.order = self.rng.permutation(len(self.labels))

    def rows(self, index):
        return self.order[index * self.batch_size : (index + 1) * self.batch_size]

    def __getitem__(self, index):
        rows = self.rows(index)
        labels, count = self.labels[rows], len(rows)
        images = [self.images[rows]]
        if self.method == "lwf" and self.old_logits is not None:  # from the second task
            kd = self.lwf_lambda / count if self.kd_mask.any() else 0.0
            targets = [
                target_rows(
                    labels,
                    self.num_classes,
                    ce=1.0 / count,
                    kd=kd,
                    logits=self.old_logits[rows],
                    kd_mask=self.kd_mask,
                )
            ]
        elif self.method == "er":
            targets = [target_rows(labels, self.num_classes)]  # weights set below: one mean
        else:
            targets = [target_rows(labels, self.num_classes, ce=1.0 / count)]
        real = [np.ones(count, dtype=bool)]
        if self.method in REHEARSAL:
            for draw in range(2 if self.method == "derpp" else 1):
                part_images, part_targets, filled = self._replayed(draw)
                images.append(part_images)
                targets.append(part_targets)
                real.append(filled)
        targets = np.concatenate(targets)
        if self.method == "er":  # one cross-entropy mean over current and replayed examples
            real = np.concatenate(real)
            targets[:, 1] = real / real.sum()
        return np.concatenate(images), targets

    def _replayed(self, draw):
        """`replay_size` examples from the buffer (zero-weight padding while it is short):
        `(images, target rows, which slots hold an example)`."""
        size, shape = self.replay_size, self.images.shape[1:]
        with self.lock:
            kept = self.buffer.sample(size) if self.buffer is not None and len(self.buffer) else {}
        n = len(kept.get("label", ()))
        images = np.zeros((size, *shape), dtype=self.images.dtype)
        targets = np.zeros((size, 4 + 2 * self.num_classes), dtype=np.float32)
        if n:
            images[:n] = kept["image"]
            if self.method == "er":
                targets[:n] = target_rows(kept["label"], self.num_classes)
            elif draw == 0:  # der and derpp: match the stored logits
                targets[:n] = target_rows(
                    kept["label"], self.num_classes, mse=self.alpha / n, logits=kept["logits"]
                )
            else:  # derpp's second draw: cross-entropy on the stored labels
                targets[:n] = target_rows(kept["label"], self.num_classes, ce=self.beta / n)
        return images, targets, np.arange(size) < n


class OfferToBuffer(keras.callbacks.Callback):
    """Before each step, offer the step's current examples to the reservoir.

    DER keeps the logits the model gives them now, before this step's update
    (mammoth keeps those of the training forward pass; here the model is
    called in inference mode, so dropout and batch statistics stay out).
    """

    def __init__(self, batches, buffer, task):
        super().__init__()
        self.batches, self.buffer, self.task = batches, buffer, task

    def on_train_batch_begin(self, batch, logs=None):
        rows = self.batches.rows(batch)
        images, labels = self.batches.images[rows], self.batches.labels[rows]
        columns = {"image": images, "label": labels, "task": np.full(len(rows), self.task)}
        if self.batches.method in ("der", "derpp"):
            columns["logits"] = keras.ops.convert_to_numpy(self.model(images, training=False))
        with self.batches.lock:
            self.buffer.add(**columns)
