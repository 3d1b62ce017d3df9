"""Object detection: a YOLO-family detector, its box operations and label assignment."""

from kapps.detection import detr, yolo, yolov1  # noqa: F401  (registers the builders)
from kapps.detection.base import Detector
from kapps.detection.boxes import non_max_suppression
from kapps.detection.detr import DETR
from kapps.detection.yolo import YOLO
from kapps.detection.yolov1 import YOLOv1

__all__ = ["DETR", "YOLO", "Detector", "YOLOv1", "non_max_suppression"]
