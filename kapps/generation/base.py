"""What every generative model in kapps offers, whatever it learns.

Images go in as raw 0–255 pixels (as for every kapps builder) and come out of
`sample` the same way, so a sample can be written to a PNG or a submission zip
as it is. Training is `model.fit(images)` or `model.fit({"images": …, "labels": …})`
for a class-conditional model: each model's `compute_loss` holds its objective.
"""

import numpy as np
from keras import ops


def split_inputs(inputs):
    """`(images, labels or None)` of `fit`'s x: images, or a dict of both."""
    if isinstance(inputs, dict):
        return inputs["images"], inputs.get("labels")
    return inputs, None


def to_pixels(images, low=-1.0, high=1.0):
    """Model-scale images in [low, high] → float32 numpy pixels in [0, 255]."""
    images = ops.convert_to_numpy(images).astype("float32")
    return np.clip((images - low) / (high - low), 0.0, 1.0) * 255.0


def check_labels(labels, num, num_classes):
    """Class labels for `num` samples: int32, in range; None for an unconditional model."""
    if num_classes is None:
        if labels is not None:
            raise ValueError("labels given to a model built without num_classes")
        return None
    if labels is None:
        raise ValueError(f"a class-conditional model needs labels (0 … {num_classes - 1})")
    labels = np.broadcast_to(np.asarray(labels, dtype="int32"), (num,))
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in 0 … {num_classes - 1}")
    return labels
