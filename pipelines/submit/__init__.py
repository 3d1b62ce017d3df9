"""Submission writers per Kaggle format, and the validator every file passes first."""

from pipelines.submit.validate import read_sample, validate_submission, write_submission
from pipelines.submit.writers import (
    boxes_frame,
    label_frame,
    matches_frame,
    parse_box_string,
    probability_frame,
    rle_frame,
    write_embeddings,
)

__all__ = [
    "boxes_frame",
    "parse_box_string",
    "label_frame",
    "matches_frame",
    "probability_frame",
    "rle_frame",
    "read_sample",
    "validate_submission",
    "write_embeddings",
    "write_submission",
]
