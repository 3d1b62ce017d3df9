"""Where each builder's ImageNet checkpoint lives: keras.applications' files and keras-hub presets.

The URLs, file names and MD5 hashes are keras.applications' own (its
`resnet.py`, `vgg16.py`, `vgg19.py`, `mobilenet.py` and `efficientnet.py`),
so a file Keras has already downloaded into its cache (`~/.keras/models`,
or `$KERAS_HOME/models`) is found and reused, and a file downloaded for
kapps is the one keras.applications would use.
"""

from dataclasses import dataclass

APPLICATIONS = "https://storage.googleapis.com/tensorflow/keras-applications/"
EFFICIENTNET = "https://storage.googleapis.com/keras-applications/"


@dataclass(frozen=True)
class WeightFile:
    """One downloadable weights file: its cache name, URL and MD5 (None: not published)."""

    name: str
    url: str
    md5: str | None = None


@dataclass(frozen=True)
class Checkpoint:
    """A public ImageNet checkpoint whose tensors map one to one onto a builder's layers.

    Attributes:
        top: the file with the 1,000-class head (None when only a preset holds it).
        notop: the file without the head.
        preset: a keras-hub preset name, for checkpoints published as presets.
        source: where it comes from, for messages and the README.
        top_has_body: the top file also holds layers the headless model keeps
            (VGG's two 4,096-unit dense layers), so a new head loads it too.
        variance_scale: per-channel factor for the `normalize` layer's variance
            after loading (keras.applications' EfficientNet divides once more
            by √std after its normalisation when it loads ImageNet weights).
    """

    source: str
    top: WeightFile | None = None
    notop: WeightFile | None = None
    preset: str | None = None
    classes: int = 1000
    top_has_body: bool = False
    variance_scale: tuple | None = None


def _pair(folder, stem, hashes, base=APPLICATIONS, notop_suffix="_notop.h5"):
    top_hash, notop_hash = hashes
    return {
        "top": WeightFile(f"{stem}.h5", f"{base}{folder}{stem}.h5", top_hash),
        "notop": WeightFile(
            f"{stem}{notop_suffix}", f"{base}{folder}{stem}{notop_suffix}", notop_hash
        ),
    }


RESNET_HASHES = {  # keras.applications.resnet.WEIGHTS_HASHES
    "resnet50": ("2cb95161c43110f7111970584f804107", "4d473c1dd8becc155b73f8504c6f6626"),
    "resnet101": ("f1aeb4b969a6efcfb50fad2f0c20cfc5", "88cf7a10940856eca736dc7b7e228a21"),
    "resnet152": ("100835be76be38e30d865e96f2aaae62", "ee4c566cf9a93f14d82f913c2dc6dd0c"),
}
VGG_HASHES = {
    "vgg16": ("64373286793e3c8b2b4e3219cbf3544b", "6d6bbae143d832006294945121d1f1fc"),
    "vgg19": ("cbe5617147190e668d6c5d5026f83318", "253f8cb515780f3b799900260a226db6"),
}
EFFICIENTNET_HASHES = {  # keras.applications.efficientnet.WEIGHTS_HASHES
    "b0": ("902e53a9f72be733fc0bcb005b3ebbac", "50bc09e76180e00e4465e1a485ddc09d"),
    "b1": ("1d254153d4ab51201f1646940f018540", "74c4e6b3e1f6a1eea24c589628592432"),
    "b2": ("b15cce36ff4dcbd00b6dd88e7857a6ad", "111f8e2ac8aa800a7a99e3239f7bfb39"),
    "b3": ("ffd1fdc53d0ce67064dc6a9c7960ede0", "af6d107764bb5b1abb91932881670226"),
    "b4": ("18c95ad55216b8f92d7e70b3a046e2fc", "ebc24e6d6c33eaebbd558eafbeedf1ba"),
    "b5": ("ace28f2a6363774853a83a0b21b9421a", "38879255a25d3c92d5e44e04ae6cec6f"),
    "b6": ("165f6e37dce68623721b423839de8be5", "9ecce42647a20130c1f39a5d4cb75743"),
    "b7": ("8c03f828fec3ef71311cd463b6759d99", "cbcfe4450ddf6f3ad90b1b398090fe4a"),
}
MOBILENET_ALPHAS = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}
MOBILENET_SIZES = (128, 160, 192, 224)
# keras-hub publishes ResNet-18 as a preset; ResNet-34 it converts from timm (its own
# resnet_vd_34 is ResNet-D: a three-convolution stem and pooled shortcuts).
KERAS_HUB_RESNETS = {"resnet18": "resnet_18_imagenet", "resnet34": "hf://timm/resnet34.a1_in1k"}


def resnet(args):
    """keras.applications' ResNet50/101/152 files; keras-hub presets for 18 and 34."""
    variant = args.get("variant")
    if variant in KERAS_HUB_RESNETS:
        return Checkpoint("keras-hub", preset=KERAS_HUB_RESNETS[variant])
    if variant not in RESNET_HASHES:
        return None
    stem = f"{variant}_weights_tf_dim_ordering_tf_kernels"
    return Checkpoint("keras.applications", **_pair("resnet/", stem, RESNET_HASHES[variant]))


def vgg(args):
    variant = args.get("variant")
    if variant not in VGG_HASHES or args.get("fc_units", 4096) != 4096:
        return None
    stem = f"{variant}_weights_tf_dim_ordering_tf_kernels"
    files = _pair(f"{variant}/", stem, VGG_HASHES[variant])
    return Checkpoint("keras.applications", top_has_body=True, **files)


def mobilenet(args):
    """The file of the model's α and square input side (224's for other sides)."""
    alpha = args.get("alpha", 1.0)
    if alpha not in MOBILENET_ALPHAS or not args.get("depthwise", True) or args.get("shallow"):
        return None
    shape = tuple(args.get("input_shape") or (224, 224, 3))
    rows = shape[0] if shape[0] == shape[1] and shape[0] in MOBILENET_SIZES else 224
    stem = f"mobilenet_{MOBILENET_ALPHAS[alpha]}_{rows}_tf"
    return Checkpoint(
        "keras.applications",
        top=WeightFile(f"{stem}.h5", f"{APPLICATIONS}mobilenet/{stem}.h5"),
        notop=WeightFile(f"{stem}_no_top.h5", f"{APPLICATIONS}mobilenet/{stem}_no_top.h5"),
    )


def efficientnet(args):
    size = str(args.get("variant", "")).removeprefix("efficientnet_")
    if size not in EFFICIENTNET_HASHES:
        return None
    files = _pair("", f"efficientnet{size}", EFFICIENTNET_HASHES[size], base=EFFICIENTNET)
    return Checkpoint("keras.applications", variance_scale=(0.229, 0.224, 0.225), **files)


# keras-hub's ViT presets fine-tuned on ImageNet-1k (Google's checkpoints): (size, patch, side).
VIT_PRESETS = {
    ("base", 16, 224): "vit_base_patch16_224_imagenet",
    ("base", 16, 384): "vit_base_patch16_384_imagenet",
    ("large", 16, 224): "vit_large_patch16_224_imagenet",
    ("large", 16, 384): "vit_large_patch16_384_imagenet",
    ("base", 32, 384): "vit_base_patch32_384_imagenet",
    ("large", 32, 384): "vit_large_patch32_384_imagenet",
}


def vit(args):
    """The preset of the model's size and patch at its side, else the nearest side.

    At another side the position embeddings are resampled (`hub.resample_positions`).
    """
    size, patch = args.get("size", "base"), args.get("patch_size", 16)
    side = tuple(args.get("input_shape") or (224, 224, 3))[0]
    sides = [s for (z, p, s) in VIT_PRESETS if (z, p) == (size, patch)]
    if not sides:
        return None
    nearest = min(sides, key=lambda s: (abs(s - side), s))
    return Checkpoint("keras-hub", preset=VIT_PRESETS[size, patch, nearest])
