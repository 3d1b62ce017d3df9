"""seq-digits reads the same files as digits: scikit-learn's digits in Kaggle's layout
(`pipelines.synthetic.digits`; needs no download)."""

from pipelines.synthetic.digits import prepare

__all__ = ["prepare"]
