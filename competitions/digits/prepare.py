"""Lay out scikit-learn's digits like Kaggle's Digit Recognizer, plus an answer key
(`pipelines.synthetic.digits`; needs no download)."""

from pipelines.synthetic.digits import prepare

__all__ = ["prepare"]
