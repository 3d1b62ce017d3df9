"""CLIP: a contrastive image–text dual encoder (Radford et al., 2021).

An image tower (any registered classification backbone with
`include_top=False`), a text tower (a transformer encoder over token ids with
a padding mask, pooled at the end-of-text token), a linear projection of each
into a shared space, L2 normalisation, and a learnt temperature (clipped at
100, section 2.5). Training minimises the symmetric InfoNCE loss over the
in-batch negatives (the paper's Figure 3): each image must pick its own text
among the batch's texts, and each text its own image.

The functional graph takes `{"images", "token_ids", "padding_mask"}` and
returns the (images, texts) similarity logits of the batch. `encode_images`
and `encode_texts` give the normalised embeddings on their own, for search and
zero-shot classification.

The ViT-B variants are OpenAI's CLIP (section 2.4 and its released code):
the image tower is a ViT without patch-projection bias, with a LayerNorm
before the encoder, QuickGELU and CLIP's pixel statistics, pooled at the
class token; the text tower is causal with QuickGELU. At ViT-B/32 (224×224
images, vocabulary 49,408, 77 tokens, a 512-wide 12-layer text tower, 512-d
embeddings) the model has 151,277,313 parameters, the trainable parameters
of keras-hub's `CLIPBackbone` with the same hyper-parameters, and loads its
presets (`weights=`) to the same embeddings (tested).
"""

import keras
from keras import ops

from kapps.layers.transformer import GPT_INIT, PositionEmbedding, TransformerBlock
from kapps.registry import create_model, register_model
from kapps.retrieval.layers import ContrastiveLogits, MaskedPooling

VARIANTS = {  # image tower and its pooling, image side, text width, layers, heads,
    # embedding size, tokens. clip_tiny is for small CPU-sized pictures: LeNet-5
    # has no batch norm (whose batch statistics leak between the pairs of a
    # contrastive batch) and its flattened maps keep where things are.
    "clip_tiny": ("lenet5", "flatten", 64, 128, 2, 4, 128, 32),
    "clip_vit_tiny16": ("vit_tiny16", "avg", 224, 256, 4, 4, 256, 77),
    "clip_resnet50": ("resnet50", "avg", 224, 512, 12, 8, 1024, 77),
    "clip_vit_b32": ("vit_base32", "token", 224, 512, 12, 8, 512, 77),
    "clip_vit_b16": ("vit_base16", "token", 224, 512, 12, 8, 512, 77),
}
# OpenAI's ViT-B CLIPs (and keras-hub's CLIPBackbone): the image tower's options, a causal
# text tower, QuickGELU everywhere.
OPENAI_VARIANTS = ("clip_vit_b32", "clip_vit_b16")
OPENAI_TOWER = {
    "patch_bias": False,
    "pre_norm": True,
    "activation": "quick_gelu",
    "layer_norm_epsilon": 1e-5,
    "normalization": "clip",
}
IMAGE_POOLINGS = ("avg", "flatten", "token")
LN_EPSILON = 1e-5


def _symmetric_infonce(logits):
    """Mean of the image→text and text→image cross-entropies; the diagonal is right."""
    labels = ops.arange(ops.shape(logits)[0])
    logits = ops.cast(logits, "float32")
    per_image = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    per_text = keras.losses.sparse_categorical_crossentropy(
        labels, ops.transpose(logits), from_logits=True
    )
    return (ops.mean(per_image) + ops.mean(per_text)) / 2


@keras.saving.register_keras_serializable(package="kapps")
class CLIP(keras.Model):
    """The dual encoder; trains with `fit` on batches of matching image–text pairs.

    Args:
        image_encoder: a registered classification model name, built headless
            (`include_top=False`) at `image_shape`, or a headless `keras.Model`.
        image_encoder_args: more builder arguments for a named tower.
        image_shape: (height, width, channels) of the raw 0–255 images.
        image_pooling: "avg" pools the tower's feature map; "flatten" keeps
            where things are (small images whose captions say "left of");
            "token" takes a ViT tower's class token (CLIP's).
        vocab_size, max_length: token ids and context length of the text tower.
        text_width, text_layers, text_heads, text_intermediate_dim: its sizes.
        text_pooling: "last" (the end-of-text token, as CLIP) or "mean".
        embed_dim: size of the shared embedding space.
        dropout: dropout in the text tower.
        text_causal: causal self-attention in the text tower (CLIP's, section
            2.4: "masked self-attention"), so a token sees only earlier ones.
        text_activation: the text MLP's activation (CLIP: "quick_gelu").
        encoder_weights: the named image tower's `weights` (`"imagenet"`, a
            path or a keras-hub preset); not saved in the config (a saved
            model holds its own weights).
    """

    def __init__(
        self,
        image_encoder,
        image_shape,
        vocab_size,
        max_length,
        text_width,
        text_layers,
        text_heads,
        text_intermediate_dim,
        embed_dim,
        image_pooling="avg",
        text_pooling="last",
        dropout=0.0,
        image_encoder_args=None,
        text_causal=False,
        text_activation="gelu",
        encoder_weights=None,
        **kwargs,
    ):
        if image_pooling not in IMAGE_POOLINGS:
            raise ValueError(
                f"image_pooling must be one of {IMAGE_POOLINGS}, got {image_pooling!r}"
            )
        if text_width % text_heads:
            raise ValueError(f"text_width {text_width} is not divisible by text_heads {text_heads}")
        if isinstance(image_encoder, dict):  # from a saved config
            image_encoder = keras.saving.deserialize_keras_object(image_encoder)
        tower = image_encoder
        if isinstance(tower, str):
            tower = create_model(
                tower,
                input_shape=tuple(image_shape),
                include_top=False,
                pooling=None if image_pooling == "flatten" else image_pooling,
                name="image_encoder",
                weights=encoder_weights,
                **(image_encoder_args or {}),
            )
        elif encoder_weights is not None:
            raise ValueError("encoder_weights needs image_encoder= a registered model name")
        images = keras.Input(tuple(image_shape), name="images")
        token_ids = keras.Input((None,), dtype="int32", name="token_ids")
        padding_mask = keras.Input((None,), dtype="int32", name="padding_mask")

        x = tower(images)
        if len(x.shape) > 2:
            x = keras.layers.Flatten(name="image_flatten")(x)
        x = keras.layers.Dense(embed_dim, use_bias=False, name="image_projection")(x)
        image_embedding = keras.layers.UnitNormalization(dtype="float32", name="image_embedding")(x)

        t = keras.layers.Embedding(
            vocab_size, text_width, embeddings_initializer=GPT_INIT, name="token_embedding"
        )(token_ids)
        t = keras.layers.Add(name="embeddings_add")(
            [t, PositionEmbedding(max_length, name="position_embedding")(t)]
        )
        for i in range(text_layers):
            t = TransformerBlock(
                text_heads,
                text_intermediate_dim,
                dropout,
                LN_EPSILON,
                causal=text_causal,
                activation=text_activation,
                kernel_initializer=GPT_INIT,
                name=f"text_block_{i}",
            )(t, padding_mask)
        t = keras.layers.LayerNormalization(epsilon=LN_EPSILON, name="text_norm")(t)
        t = MaskedPooling(text_pooling, name="text_pool")(t, padding_mask)
        t = keras.layers.Dense(embed_dim, use_bias=False, name="text_projection")(t)
        text_embedding = keras.layers.UnitNormalization(dtype="float32", name="text_embedding")(t)

        pair = [image_embedding, text_embedding]
        logits = ContrastiveLogits(dtype="float32", name="logits")(pair)
        inputs = {"images": images, "token_ids": token_ids, "padding_mask": padding_mask}
        super().__init__(inputs=inputs, outputs=logits, **kwargs)
        self.image_encoder = image_encoder if isinstance(image_encoder, str) else None
        self.image_shape = tuple(image_shape)
        self.vocab_size = vocab_size
        self.max_length = max_length
        self.text_width = text_width
        self.text_layers = text_layers
        self.text_heads = text_heads
        self.text_intermediate_dim = text_intermediate_dim
        self.embed_dim = embed_dim
        self.image_pooling = image_pooling
        self.text_pooling = text_pooling
        self.dropout = dropout
        self.image_encoder_args = dict(image_encoder_args or {})
        self.text_causal = text_causal
        self.text_activation = text_activation

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Symmetric InfoNCE over the batch (targets are implied: pair i is row i)."""
        loss = _symmetric_infonce(y_pred)
        for extra in self.losses:
            loss = loss + ops.cast(ops.sum(extra), loss.dtype)
        return loss

    # Encoders on their own ------------------------------------------------------
    def _part(self, inputs, output):
        return keras.Model(
            {name: self.get_layer(name).output for name in inputs}, self.get_layer(output).output
        )

    def encode_images(self, images, batch_size=128):
        """L2-normalised image embeddings (numpy) of raw images or a dataset of them."""
        part = self._part(["images"], "image_embedding")
        if hasattr(images, "shape"):  # an array, not a dataset of {"images": …} batches
            return part.predict({"images": images}, batch_size=batch_size, verbose=0)
        return part.predict(images, verbose=0)

    def encode_texts(self, token_ids, padding_mask=None, batch_size=512):
        """L2-normalised text embeddings of padded token ids (0 = padding)."""
        if padding_mask is None:
            padding_mask = ops.convert_to_numpy(token_ids) != 0
        inputs = {"token_ids": token_ids, "padding_mask": ops.cast(padding_mask, "int32")}
        parts = self._part(["token_ids", "padding_mask"], "text_embedding")
        return parts.predict(inputs, batch_size=batch_size, verbose=0)

    def logit_scale(self):
        return float(ops.convert_to_numpy(self.get_layer("logits").scale()))

    def get_config(self):
        tower = self.image_encoder or keras.saving.serialize_keras_object(
            self.get_layer("image_encoder")
        )
        return {
            "name": self.name,
            "trainable": self.trainable,
            "image_encoder": tower,
            "image_shape": self.image_shape,
            "vocab_size": self.vocab_size,
            "max_length": self.max_length,
            "text_width": self.text_width,
            "text_layers": self.text_layers,
            "text_heads": self.text_heads,
            "text_intermediate_dim": self.text_intermediate_dim,
            "embed_dim": self.embed_dim,
            "image_pooling": self.image_pooling,
            "text_pooling": self.text_pooling,
            "dropout": self.dropout,
            "image_encoder_args": self.image_encoder_args,
            "text_causal": self.text_causal,
            "text_activation": self.text_activation,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@register_model(
    task="retrieval",
    variants={name: {"variant": name} for name in VARIANTS},
    test_kwargs={
        "image_shape": (32, 32, 3),
        "vocab_size": 23,
        "max_length": 16,
        "text_width": 16,
        "text_layers": 1,
        "text_heads": 2,
        "embed_dim": 8,
    },
)
def clip(
    image_shape=None,
    vocab_size=49408,
    *,
    variant="clip_vit_b32",
    image_encoder=None,
    image_encoder_args=None,
    image_pooling=None,
    max_length=None,
    text_width=None,
    text_layers=None,
    text_heads=None,
    text_intermediate_dim=None,
    embed_dim=None,
    text_pooling="last",
    dropout=0.0,
    text_causal=None,
    text_activation=None,
    encoder_weights=None,
    name=None,
):
    """Build a CLIP dual encoder; any argument overrides the variant's.

    Args:
        image_shape: raw image shape; None: the variant's square RGB side.
        vocab_size: token ids of the text tower (CLIP's BPE: 49,408).
        variant: a row of `VARIANTS` (`clip_tiny`, …, `clip_vit_b32`, `clip_vit_b16`).
        image_encoder: a classification model name (`kapps models`) or a
            headless `keras.Model`; None: the variant's.
        image_encoder_args: more arguments for the named tower's builder.
        image_pooling: "avg" or "flatten" (keeps positions of small feature maps);
            None: the variant's.
        max_length: tokens per caption; None: the variant's (77, as CLIP).
        text_width, text_layers, text_heads: text tower sizes; None: the variant's.
        text_intermediate_dim: text MLP width; None: 4 × text_width.
        embed_dim: shared embedding size; None: the variant's.
        text_pooling: "last" (end-of-text token) or "mean".
        dropout: text-tower dropout.
        text_causal, text_activation: see `CLIP`; None: the variant's (OpenAI's
            ViT-B variants: causal, "quick_gelu"; the others: False, "gelu").
        encoder_weights: the image tower's pretrained weights (see `CLIP`).
        name: model name; None: the variant.

    Example:
    >>> model = clip((64, 64, 3), 100, variant="clip_tiny")
    >>> model.output_shape
    (None, None)
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown CLIP variant {variant!r}; one of {sorted(VARIANTS)}")
    tower, pooling, side, width, layers, heads, embed, context = VARIANTS[variant]
    width = text_width or width
    openai = variant in OPENAI_VARIANTS
    tower_args = OPENAI_TOWER if openai and image_encoder is None else {}
    return CLIP(
        image_encoder or tower,
        tuple(image_shape or (side, side, 3)),
        vocab_size,
        max_length or context,
        width,
        text_layers or layers,
        text_heads or heads,
        text_intermediate_dim or 4 * width,
        embed_dim or embed,
        image_pooling=image_pooling or pooling,
        text_pooling=text_pooling,
        dropout=dropout,
        image_encoder_args={**tower_args, **(image_encoder_args or {})},
        text_causal=openai if text_causal is None else text_causal,
        text_activation=text_activation or ("quick_gelu" if openai else "gelu"),
        encoder_weights=encoder_weights,
        name=name or variant,
    )
