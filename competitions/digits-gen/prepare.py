"""scikit-learn's real 8×8 digits as PNGs in class folders, and the held-out ones the
generated digits are scored against (`pipelines.synthetic.digits`; needs no download)."""

from pipelines.synthetic.digits import prepare_images as prepare

__all__ = ["prepare"]
