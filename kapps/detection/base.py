"""What every detector shares: `predict` turns raw outputs into final boxes."""

import keras
from keras import ops

from kapps.detection.boxes import non_max_suppression


class Detector(keras.Model):
    """A functional detector whose `predict` returns `{"boxes", "labels", "scores"}`.

    Subclasses set `image_shape`, `score_threshold`, `iou_threshold` and
    `max_detections`, and implement `boxes_and_scores(raw)`: the raw outputs
    → candidate boxes (B, K, 4) xyxy in input pixels and their class scores
    (B, K, C). Decoding and class-wise non-max suppression then run inside
    the predict step, so a saved `.keras` file predicts boxes directly.

    `get_config` records the constructor's arguments: `input_shape`,
    `num_classes`, the subclass's `config_keys` (each read from the attribute
    of that name, or the one `config_attributes` names) and the suppression
    settings; `from_config` calls the constructor with them.
    """

    config_keys = ()
    config_attributes = {}

    def get_config(self):
        config = {
            "name": self.name,
            "trainable": self.trainable,
            "input_shape": self.image_shape,
            "num_classes": self.num_classes,
        }
        for key in (*self.config_keys, "score_threshold", "iou_threshold", "max_detections"):
            config[key] = getattr(self, self.config_attributes.get(key, key))
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def boxes_and_scores(self, raw):
        raise NotImplementedError

    def predict_step(self, *args):
        # Keras' own step gives the raw outputs (with the model state on JAX); decode them.
        outputs = super().predict_step(*args)
        if isinstance(outputs, tuple):
            return self.detect(outputs[0]), outputs[1]
        return self.detect(outputs)

    def detect(self, raw):
        """Raw outputs → final detections: best class per candidate, then NMS."""
        boxes, scores = self.boxes_and_scores(ops.cast(raw, "float32"))
        height, width = self.image_shape[:2]
        limit = ops.convert_to_tensor([width, height, width, height], "float32")
        return non_max_suppression(
            ops.clip(boxes, 0.0, limit),
            ops.max(scores, axis=-1),
            ops.cast(ops.argmax(scores, axis=-1), "int32"),
            iou_threshold=self.iou_threshold,
            score_threshold=self.score_threshold,
            max_detections=self.max_detections,
        )
