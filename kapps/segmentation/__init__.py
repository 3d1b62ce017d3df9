"""Semantic segmentation: U-Net, Segmenter, their losses and metrics, RLE."""

from kapps.segmentation import segmenter, unet  # noqa: F401  (registers the builders)
from kapps.segmentation.losses import MeanDice, SegmentationLoss

__all__ = ["MeanDice", "SegmentationLoss"]
