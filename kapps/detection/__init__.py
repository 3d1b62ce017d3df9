"""Object detection: a YOLO-family detector, its box operations and label assignment."""

from kapps.detection import yolo  # noqa: F401  (registers the builders)
from kapps.detection.boxes import non_max_suppression
from kapps.detection.yolo import YOLO

__all__ = ["YOLO", "non_max_suppression"]
