"""tf.data readers per source format, and the image pipeline they share."""

from pipelines.data.images import ImageSet, batched, decoded_images
from pipelines.data.sources import ImageSource, read_test_source, read_train_source

__all__ = [
    "ImageSet",
    "ImageSource",
    "batched",
    "decoded_images",
    "read_test_source",
    "read_train_source",
]
