"""The tasks a model learns one after another, from `continual:` in the config.

- class-incremental (`class_il`, Split): the classes arrive in groups of
  `classes_per_task`; the model is scored over every class seen so far;
- task-incremental (`task_il`, Split): the same tasks, but the model is told
  the task at test time, so its logits are masked to that task's classes;
- domain-incremental (`domain_il`): every task holds every class, each seen
  through its own fixed transform: a random pixel permutation (Permuted) or
  a rotation by a random angle in [0°, 180°) (Rotated).
"""

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from kapps.errors import ConfigError


@dataclass(frozen=True)
class ContinualTask:
    """One task: the classes it trains on, and the transform its images go through."""

    classes: tuple
    permutation: np.ndarray | None = None  # of the flattened pixels of one image
    angle: float | None = None  # degrees, counter-clockwise

    def view(self, images):
        """The task's view of `images` (N, H, W, C)."""
        if self.permutation is not None:
            flat = images.reshape(len(images), -1, images.shape[-1])
            return flat[:, self.permutation].reshape(images.shape)
        if self.angle is not None:
            return ndimage.rotate(images, self.angle, axes=(1, 2), reshape=False, order=1)
        return images


def make_tasks(continual, num_classes, image_shape):
    """The `ContinualTask`s of `continual` (the config section) over `num_classes`."""
    rng = np.random.default_rng(continual.seed)
    if continual.scenario == "domain_il":
        classes = tuple(range(num_classes))
        if continual.domain == "permuted":
            pixels = int(np.prod(image_shape[:2]))
            return [
                ContinualTask(classes, permutation=rng.permutation(pixels))
                for _ in range(continual.tasks)
            ]
        return [
            ContinualTask(classes, angle=float(rng.uniform(0, 180))) for _ in range(continual.tasks)
        ]
    order = list(continual.order) if continual.order else list(range(num_classes))
    if sorted(order) != sorted(set(order)) or not set(order) <= set(range(num_classes)):
        raise ConfigError(
            f"continual.order {order} must list distinct class ids of 0–{num_classes - 1}"
        )
    needed = continual.tasks * continual.classes_per_task
    if needed > len(order):
        raise ConfigError(
            f"continual: {continual.tasks} tasks of {continual.classes_per_task} classes need "
            f"{needed} classes, and the data has {len(order)}"
        )
    per = continual.classes_per_task
    return [ContinualTask(tuple(order[k * per : (k + 1) * per])) for k in range(continual.tasks)]


def task_rows(labels, task):
    """Indices of the examples of `labels` that belong to `task`."""
    return np.flatnonzero(np.isin(labels, task.classes))


def logit_mask(tasks, k, trained, scenario, num_classes):
    """Which logits count when scoring task `k` after training tasks 0…`trained`.

    Task-IL: task `k`'s own classes (the task is known); class-IL: every class
    seen so far; domain-IL: every class.
    """
    mask = np.zeros(num_classes, dtype=bool)
    if scenario == "task_il":
        mask[list(tasks[k].classes)] = True
    elif scenario == "class_il":
        for task in tasks[: trained + 1]:
            mask[list(task.classes)] = True
    else:
        mask[:] = True
    return mask
