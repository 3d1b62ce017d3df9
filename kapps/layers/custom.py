"""Custom layers the builders share. Serializable, `keras.ops` only."""

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="kapps")
class LocalResponseNormalization(keras.layers.Layer):
    """Cross-channel local response normalisation (Krizhevsky et al., 2012, §3.3).

    `b = a / (k + alpha * sum of a² over `size` neighbouring channels) ** beta`,
    with the paper's k=2, size=5, alpha=1e-4, beta=0.75. Channels last.
    """

    def __init__(self, size=5, k=2.0, alpha=1e-4, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        self.size, self.k, self.alpha, self.beta = size, k, alpha, beta

    def call(self, inputs):
        squared = ops.square(inputs)
        half = self.size // 2
        padded = ops.pad(squared, [[0, 0]] * (len(inputs.shape) - 1) + [[half, half]])
        channels = inputs.shape[-1]
        window = sum(padded[..., i : i + channels] for i in range(self.size))
        return inputs / ops.power(self.k + self.alpha * window, self.beta)

    def get_config(self):
        return {
            **super().get_config(),
            "size": self.size,
            "k": self.k,
            "alpha": self.alpha,
            "beta": self.beta,
        }


@keras.saving.register_keras_serializable(package="kapps")
class ClassTokenPositionEmbedding(keras.layers.Layer):
    """Prepend a learned class token and add learned position embeddings (ViT, eq. 1)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    def build(self, input_shape):
        tokens, dim = input_shape[1], input_shape[2]
        init = keras.initializers.TruncatedNormal(stddev=0.02)
        self.class_token = self.add_weight(shape=(1, 1, dim), initializer="zeros", name="cls")
        self.position = self.add_weight(shape=(1, tokens + 1, dim), initializer=init, name="pos")

    def call(self, inputs):
        batch = ops.shape(inputs)[0]
        cls = ops.broadcast_to(
            ops.cast(self.class_token, inputs.dtype), (batch, 1, inputs.shape[-1])
        )
        return ops.concatenate([cls, inputs], axis=1) + ops.cast(self.position, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1] + 1, input_shape[2])


@keras.saving.register_keras_serializable(package="kapps")
class ClassEmbeddings(keras.layers.Layer):
    """Append one learned embedding per class to a token sequence (Segmenter's decoder)."""

    def __init__(self, num_classes, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes

    def build(self, input_shape):
        init = keras.initializers.TruncatedNormal(stddev=0.02)
        self.embeddings = self.add_weight(
            shape=(1, self.num_classes, input_shape[-1]), initializer=init, name="classes"
        )

    def call(self, inputs):
        batch = ops.shape(inputs)[0]
        classes = ops.broadcast_to(
            ops.cast(self.embeddings, inputs.dtype), (batch, self.num_classes, inputs.shape[-1])
        )
        return ops.concatenate([inputs, classes], axis=1)

    def compute_output_shape(self, input_shape):
        tokens = None if input_shape[1] is None else input_shape[1] + self.num_classes
        return (input_shape[0], tokens, input_shape[2])

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


@keras.saving.register_keras_serializable(package="kapps")
class ImagePreprocessing(keras.layers.Layer):
    """Keras' image preprocessing conventions as a layer, so raw pixels go in.

    Modes (those of `keras.applications.imagenet_utils.preprocess_input`):
    "caffe" (RGB→BGR, ImageNet mean subtracted), "tf" (to [-1, 1]), "torch"
    ([0, 1] then ImageNet mean and std), "none" (the model rescales itself).
    """

    MODES = ("none", "caffe", "tf", "torch")
    CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
    TORCH_MEAN = (0.485, 0.456, 0.406)
    TORCH_STD = (0.229, 0.224, 0.225)

    def __init__(self, mode="none", **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        self.mode = mode

    def call(self, inputs):
        rgb = inputs.shape[-1] == 3  # other channel counts use the averaged statistics

        def stat(values):
            return ops.convert_to_tensor(values if rgb else sum(values) / 3, inputs.dtype)

        if self.mode == "caffe":
            images = ops.flip(inputs, axis=-1) if rgb else inputs
            return images - stat(self.CAFFE_MEAN_BGR)
        if self.mode == "tf":
            return inputs / 127.5 - 1.0
        if self.mode == "torch":
            return (inputs / 255.0 - stat(self.TORCH_MEAN)) / stat(self.TORCH_STD)
        return inputs

    @classmethod
    def numpy_reference(cls, images, mode):
        """The same arithmetic in NumPy, for recognising a library's convention."""
        if mode == "caffe":
            return images[..., ::-1] - np.array(cls.CAFFE_MEAN_BGR)
        if mode == "tf":
            return images / 127.5 - 1.0
        if mode == "torch":
            return (images / 255.0 - np.array(cls.TORCH_MEAN)) / np.array(cls.TORCH_STD)
        return images

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
