"""Pretrained weights: every checkpoint a builder claims gives the same outputs as its source.

Nothing is downloaded. A reference model from keras.applications is built
with random weights (batch-norm statistics randomised too), written in the
HDF5 layout keras.applications publishes, and put in a temporary Keras cache
under the published file name with a hash the test registers; keras.applications
itself then loads the same file through `weights="imagenet"` (its download
function answered with the file), so both sides run their ImageNet code paths.
"""

import hashlib
import sys

import keras
import numpy as np
import pytest
from keras.src.utils import file_utils

import kapps
from kapps.classification.vit import CLIP_MEAN, CLIP_STD
from kapps.errors import ConfigError
from kapps.pretrained import catalog, loading
from kapps.registry import get_entry
from kapps.retrieval.clip import OPENAI_TOWER
from tests import replicas

RNG = np.random.default_rng(0)


def write_legacy_h5(model, path):
    return replicas.keras_applications_file(model, path)


HASH_TABLES = (catalog.RESNET_HASHES, catalog.VGG_HASHES, catalog.EFFICIENTNET_HASHES)


@pytest.fixture
def keras_cache(tmp_path, monkeypatch):
    """`put(file, model)`: a Keras cache holding a reference's weights under `file`'s name."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))

    def put(file, model):
        for table in HASH_TABLES:
            for key, pair in table.items():
                if file.md5 is not None and file.md5 in pair:
                    return replicas.imagenet_cache(
                        monkeypatch, tmp_path / "keras", model, file, table, key
                    )
        return write_legacy_h5(model, loading.cache_folder() / file.name)  # no hash published

    return put


def reference_from_file(builder, path, **kwargs):
    """keras.applications' own ImageNet model, its weights read from `path`."""
    asked = []

    def answer(fname=None, *args, **kw):
        asked.append(fname)
        return str(path)

    original = file_utils.get_file
    file_utils.get_file = answer
    try:
        model = builder(weights="imagenet", classifier_activation=None, **kwargs)
    finally:
        file_utils.get_file = original
    return model, asked[0]


def preprocess(builder, images):
    return sys.modules[builder.__module__].preprocess_input(images.copy())


# name, keras.applications builder, input side, kapps arguments; heavy ones are slow.
APPLICATIONS = [
    ("resnet50", keras.applications.ResNet50, 64, {}),
    pytest.param("resnet101", keras.applications.ResNet101, 64, {}, marks=pytest.mark.slow),
    pytest.param("resnet152", keras.applications.ResNet152, 64, {}, marks=pytest.mark.slow),
    ("vgg16", keras.applications.VGG16, 64, {}),
    ("vgg19", keras.applications.VGG19, 64, {}),
    ("mobilenet", keras.applications.MobileNet, 128, {}),
    ("mobilenet_075", keras.applications.MobileNet, 160, {"alpha": 0.75}),
    ("mobilenet_050", keras.applications.MobileNet, 192, {"alpha": 0.5}),
    ("mobilenet_025", keras.applications.MobileNet, 224, {"alpha": 0.25}),
    ("efficientnet_b0", keras.applications.EfficientNetB0, 64, {}),
    pytest.param(
        "efficientnet_b3", keras.applications.EfficientNetB3, 64, {}, marks=pytest.mark.slow
    ),
]
for size in (1, 2, 4, 5, 6, 7):
    APPLICATIONS.append(
        pytest.param(
            f"efficientnet_b{size}",
            getattr(keras.applications, f"EfficientNetB{size}"),
            64,
            {},
            marks=pytest.mark.slow,
        )
    )


@pytest.mark.parametrize(("name", "builder", "side", "ref_kwargs"), APPLICATIONS)
def test_imagenet_backbone_matches_keras_applications(keras_cache, name, builder, side, ref_kwargs):
    shape = (side, side, 3)
    checkpoint = get_entry(name).checkpoint({**get_entry(name).defaults, "input_shape": shape})
    source = builder(weights=None, include_top=False, input_shape=shape, **ref_kwargs)
    path = keras_cache(checkpoint.notop, source)
    reference, asked = reference_from_file(
        builder, path, include_top=False, input_shape=shape, pooling="avg", **ref_kwargs
    )
    assert asked == checkpoint.notop.name  # the file keras.applications itself would use
    model = kapps.create_model(
        name, input_shape=shape, include_top=False, pooling="avg", weights="imagenet"
    )
    images = RNG.uniform(0, 255, (2, *shape)).astype("float32")
    expected = np.asarray(reference(preprocess(builder, images)))
    got = np.asarray(model(images))
    assert np.abs(expected).max() > 1e-3  # a real signal, not two zero maps
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize(
    ("name", "builder", "side"),
    [
        ("resnet50", keras.applications.ResNet50, 224),
        ("mobilenet_050", keras.applications.MobileNet, 128),
        ("efficientnet_b0", keras.applications.EfficientNetB0, 224),
        pytest.param("vgg16", keras.applications.VGG16, 224, marks=pytest.mark.slow),
    ],
)
def test_imagenet_classifier_gives_the_same_logits(keras_cache, name, builder, side):
    shape = (side, side, 3)
    alpha = {"alpha": 0.5} if name == "mobilenet_050" else {}
    checkpoint = get_entry(name).checkpoint({**get_entry(name).defaults, "input_shape": shape})
    source = builder(weights=None, input_shape=shape, **alpha)
    path = keras_cache(checkpoint.top, source)
    reference, asked = reference_from_file(builder, path, input_shape=shape, **alpha)
    assert asked == checkpoint.top.name
    model = kapps.create_model(name, input_shape=shape, weights="imagenet")
    images = RNG.uniform(0, 255, (1, *shape)).astype("float32")
    expected = np.asarray(reference(preprocess(builder, images)))
    np.testing.assert_allclose(np.asarray(model(images)), expected, rtol=1e-4, atol=1e-4)


def test_a_new_number_of_classes_keeps_the_backbone_and_starts_a_new_head(keras_cache):
    shape = (64, 64, 3)
    checkpoint = catalog.resnet({"variant": "resnet50"})
    source = keras.applications.ResNet50(weights=None, include_top=False, input_shape=shape)
    keras_cache(checkpoint.notop, source)
    model = kapps.create_model("resnet50", input_shape=shape, num_classes=3, weights="imagenet")
    assert model.output_shape == (None, 3)
    np.testing.assert_array_equal(
        model.get_layer("conv5_block3_3_conv").get_weights()[0],
        source.get_layer("conv5_block3_3_conv").get_weights()[0],
    )


def test_a_saved_kapps_model_loads_by_name_with_any_head(tmp_path):
    trained = kapps.create_model("resnet18", input_shape=(32, 32, 3), num_classes=2)
    trained.save(tmp_path / "best.keras")
    same = kapps.create_model(
        "resnet18", input_shape=(32, 32, 3), num_classes=2, weights=tmp_path / "best.keras"
    )
    other = kapps.create_model(
        "resnet18", input_shape=(32, 32, 3), num_classes=7, weights=tmp_path / "best.keras"
    )
    images = RNG.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(same(images)), np.asarray(trained(images)), atol=1e-5)
    for layer in ("conv1_conv", "conv5_block2_2_conv"):
        np.testing.assert_array_equal(
            other.get_layer(layer).get_weights()[0], trained.get_layer(layer).get_weights()[0]
        )


def test_download_goes_to_the_keras_cache_and_then_works_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    published = write_legacy_h5(
        keras.applications.MobileNet(weights=None, alpha=0.25, input_shape=(128, 128, 3)),
        tmp_path / "published.h5",
    )
    md5 = hashlib.md5(published.read_bytes()).hexdigest()
    file = catalog.WeightFile("mobilenet_2_5_128_tf.h5", published.as_uri(), md5)
    path = loading.fetch(file)
    assert (
        path == loading.cache_folder() / file.name and path.read_bytes() == published.read_bytes()
    )
    published.unlink()  # the "network" is gone; the cached copy is used
    assert loading.fetch(file) == path


def test_offline_without_the_file_names_it_and_where_it_goes(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    file = catalog.WeightFile("resnet50_notop.h5", (tmp_path / "absent.h5").as_uri(), "0" * 32)
    with pytest.raises(ConfigError, match=r"cannot download resnet50_notop\.h5 .*put the file in"):
        loading.fetch(file)


def test_builders_without_a_checkpoint_refuse_imagenet_and_say_why():
    with pytest.raises(ConfigError, match="torchvision's AlexNet is the one-GPU variant"):
        kapps.create_model("alexnet", input_shape=(67, 67, 3), num_classes=5, weights="imagenet")
    with pytest.raises(ConfigError, match="GoogLeNet adds batch normalisation"):
        kapps.create_model("googlenet", input_shape=(32, 32, 3), num_classes=5, weights="imagenet")
    with pytest.raises(ConfigError, match="no ImageNet weights"):
        kapps.create_model("lenet5", input_shape=(32, 32, 1), num_classes=10, weights="imagenet")


def test_weights_of_another_architecture_name_the_first_tensor_that_does_not_fit(tmp_path):
    other = write_legacy_h5(
        keras.applications.MobileNet(weights=None, include_top=False, input_shape=(64, 64, 3)),
        tmp_path / "mobilenet.h5",
    )
    with pytest.raises(ConfigError, match=r"mobilenet\.h5's layer 'conv1'.*'conv1_conv'"):
        kapps.create_model("resnet50", input_shape=(64, 64, 3), include_top=False, weights=other)


def test_a_truncated_file_and_a_grayscale_input_are_one_line_errors(tmp_path):
    whole = write_legacy_h5(
        keras.applications.MobileNet(weights=None, include_top=False, input_shape=(64, 64, 3)),
        tmp_path / "whole.h5",
    )
    (tmp_path / "cut.h5").write_bytes(whole.read_bytes()[:10_000])
    with pytest.raises(ConfigError, match="cannot read weights file"):
        kapps.create_model("mobilenet", input_shape=(64, 64, 3), weights=tmp_path / "cut.h5")
    with pytest.raises(ConfigError, match="expect RGB images"):
        kapps.create_model("mobilenet", input_shape=(64, 64, 1), weights=whole)
    with pytest.raises(ConfigError, match="weights not found"):
        kapps.create_model("mobilenet", input_shape=(64, 64, 3), weights=tmp_path / "nope.h5")


def test_every_checkpoint_claim_has_an_equivalence_test():
    """A builder that declares a checkpoint must appear in this file's equivalence tests."""
    tested = {p.values[0] if hasattr(p, "values") else p[0] for p in APPLICATIONS}
    tested |= set(HUB_TESTED)
    claimed = {
        name
        for name in kapps.list_models()
        if get_entry(name).checkpoint
        and get_entry(name).checkpoint({**get_entry(name).defaults, "input_shape": (224, 224, 3)})
    }
    assert claimed <= tested, sorted(claimed - tested)


def keras_hub_resnet_preset(folder, depths):
    """A keras-hub ResNet classifier with random weights, saved as a preset folder."""
    import keras_hub

    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 128, 256, 512],
        stackwise_num_blocks=list(depths),
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="basic_block",
        use_pre_activation=False,
    )
    replicas.randomise_statistics(backbone)
    classifier = keras_hub.models.ResNetImageClassifier(backbone=backbone, num_classes=1000)
    classifier.save_to_preset(str(folder))
    return classifier


@pytest.mark.parametrize(
    ("name", "depths"),
    [("resnet18", (2, 2, 2, 2)), pytest.param("resnet34", (3, 4, 6, 3), marks=pytest.mark.slow)],
)
def test_keras_hub_resnet_preset_gives_the_same_logits(tmp_path, name, depths):
    reference = keras_hub_resnet_preset(tmp_path / name, depths)
    model = kapps.create_model(name, input_shape=(64, 64, 3), weights=tmp_path / name)
    images = RNG.uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    normalised = ((images / 255.0 - mean) / std).astype("float32")
    expected = np.asarray(reference(normalised))
    np.testing.assert_allclose(np.asarray(model(images)), expected, rtol=1e-4, atol=1e-4)


VIT_SIZES = {"tiny": (192, 12, 3), "base": (768, 12, 12), "large": (1024, 24, 16)}


def keras_hub_vit_preset(folder, size, patch, side, scale=1 / 127.5, offset=-1.0):
    """A keras-hub ViT classifier with random weights, saved with its image converter."""
    import keras_hub

    dim, depth, heads = VIT_SIZES[size]
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(side, side, 3),
        patch_size=(patch, patch),
        num_layers=depth,
        num_heads=heads,
        hidden_dim=dim,
        mlp_dim=4 * dim,
    )
    for weight in backbone.weights:  # LayerNorm's ones and zeros would hide a swapped pair
        weight.assign(RNG.normal(0, 0.05, weight.shape).astype("float32") + np.asarray(weight))
    converter = keras_hub.layers.ViTImageConverter(
        image_size=(side, side), scale=scale, offset=offset
    )
    preprocessor = keras_hub.models.ViTImageClassifierPreprocessor(image_converter=converter)
    classifier = keras_hub.models.ViTImageClassifier(
        backbone=backbone, num_classes=1000, preprocessor=preprocessor
    )
    classifier.save_to_preset(str(folder))
    return classifier


VITS = [("vit_tiny16", "tiny", 16, 32)] + [
    pytest.param(name, size, patch, side, marks=pytest.mark.slow)
    for name, size, patch, side in [
        ("vit_base16", "base", 16, 224),
        ("vit_base32", "base", 32, 384),
        ("vit_large16", "large", 16, 224),
        ("vit_large32", "large", 32, 384),
    ]
]


@pytest.mark.parametrize(("name", "size", "patch", "side"), VITS)
def test_keras_hub_vit_preset_gives_the_same_logits(tmp_path, name, size, patch, side):
    """keras-hub's separate q, k, v projections fuse into kapps' block exactly."""
    reference = keras_hub_vit_preset(tmp_path / name, size, patch, side)
    model = kapps.create_model(name, input_shape=(side, side, 3), weights=tmp_path / name)
    images = RNG.uniform(0, 255, (2, side, side, 3)).astype("float32")
    expected = np.asarray(reference(images / 127.5 - 1.0))
    np.testing.assert_allclose(np.asarray(model(images)), expected, rtol=1e-4, atol=1e-4)


def test_a_vit_at_another_resolution_resamples_its_position_embeddings(tmp_path):
    keras_hub_vit_preset(tmp_path / "vit", "tiny", 16, 32)
    model = kapps.create_model("vit_tiny16", input_shape=(64, 64, 3), weights=tmp_path / "vit")
    assert model(np.zeros((1, 64, 64, 3), "float32")).shape == (1, 1000)
    from kapps.pretrained.hub import resample_positions

    positions = np.concatenate([np.full((1, 4), -7.0), np.ones((4, 4))]).astype("float32")
    resampled = resample_positions(positions, 1 + 16)
    assert resampled.shape == (17, 4)
    np.testing.assert_array_equal(resampled[0], positions[0])  # the class token's is kept
    np.testing.assert_allclose(resampled[1:], 1.0, atol=1e-5)  # a constant grid stays constant
    assert resample_positions(positions, 5) is positions


def test_a_preset_normalising_otherwise_is_flagged(tmp_path):
    keras_hub_vit_preset(tmp_path / "vit", "tiny", 16, 32, scale=1 / 255.0, offset=0.0)
    with pytest.warns(UserWarning, match=r"x·\[0.003922, 0.003922, 0.003922\] \+ \[0, 0, 0\]"):
        kapps.create_model("vit_tiny16", input_shape=(32, 32, 3), weights=tmp_path / "vit")


def keras_hub_gpt2_preset(folder, **config):
    import keras_hub

    backbone = keras_hub.models.GPT2Backbone(**config)
    for weight in backbone.weights:
        weight.assign(RNG.normal(0, 0.05, weight.shape).astype("float32") + np.asarray(weight))
    backbone.save_to_preset(str(folder))
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)


GPT2_TINY = {
    "vocabulary_size": 50,
    "num_layers": 2,
    "num_heads": 2,
    "hidden_dim": 16,
    "intermediate_dim": 64,
    "max_sequence_length": 32,
}
GPT2_SMALL = {
    "vocabulary_size": 50257,
    "num_layers": 12,
    "num_heads": 12,
    "hidden_dim": 768,
    "intermediate_dim": 3072,
    "max_sequence_length": 1024,
}


@pytest.mark.parametrize(
    "config", [GPT2_TINY, pytest.param(GPT2_SMALL, marks=pytest.mark.slow)], ids=["tiny", "124M"]
)
def test_keras_hub_gpt2_preset_gives_the_same_next_token_logits(tmp_path, config):
    reference = keras_hub_gpt2_preset(tmp_path / "gpt2", **config)
    model = kapps.create_model(
        "gpt2_small",
        vocab_size=config["vocabulary_size"],
        num_layers=config["num_layers"],
        num_heads=config["num_heads"],
        hidden_dim=config["hidden_dim"],
        max_length=config["max_sequence_length"],
        weights=tmp_path / "gpt2",
    )
    token_ids = RNG.integers(0, config["vocabulary_size"], (2, 12)).astype("int32")
    expected = reference({"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)})
    np.testing.assert_allclose(np.asarray(model(token_ids)), np.asarray(expected), atol=1e-4)


def test_a_keras_hub_preset_name_is_fetched_through_keras_hub(monkeypatch):
    """`weights="gpt2_base_en"` asks keras-hub for the preset (no network here: one line)."""
    import keras_hub

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(keras_hub.models.Backbone, "from_preset", offline)
    with pytest.raises(ConfigError, match="cannot download keras-hub preset gpt2_base_en"):
        kapps.create_model("gpt_nano", vocab_size=50, weights="gpt2_base_en")


def keras_hub_clip_preset(
    folder,
    patch,
    side,
    width,
    layers,
    heads,
    text_width,
    text_layers,
    text_heads,
    vocab,
    context,
    embed,
):
    """A keras-hub CLIPBackbone with random weights and its image converter, as a preset."""
    import keras_hub

    backbone = keras_hub.models.CLIPBackbone(
        keras_hub.models.CLIPVisionEncoder(
            patch, width, layers, heads, 4 * width, image_shape=(side, side, 3)
        ),
        keras_hub.models.CLIPTextEncoder(
            vocab,
            text_width,
            text_width,
            text_layers,
            text_heads,
            4 * text_width,
            max_sequence_length=context,
        ),
        projection_dim=embed,
    )
    for weight in backbone.trainable_weights:
        weight.assign(RNG.normal(0, 0.05, weight.shape).astype("float32") + np.asarray(weight))
    backbone.save_to_preset(str(folder))
    mean, std = np.array(CLIP_MEAN), np.array(CLIP_STD)
    converter = keras_hub.layers.CLIPImageConverter(
        image_size=(side, side), scale=(1 / (255 * std)).tolist(), offset=(-mean / std).tolist()
    )
    converter.save_to_preset(str(folder))
    return backbone


CLIPS = [
    (
        "clip_vit_b32",
        {
            "image_encoder": "vit_tiny16",
            "image_shape": (32, 32, 3),
            "vocab_size": 50,
            "max_length": 12,
            "text_width": 24,
            "text_layers": 2,
            "text_heads": 2,
            "embed_dim": 16,
            "image_encoder_args": OPENAI_TOWER,
        },
        (16, 32, 192, 12, 3, 24, 2, 2, 50, 12, 16),
    ),
    pytest.param(
        "clip_vit_b32",
        {},
        (32, 224, 768, 12, 12, 512, 12, 8, 49408, 77, 512),
        marks=pytest.mark.slow,
    ),
    pytest.param(
        "clip_vit_b16",
        {},
        (16, 224, 768, 12, 12, 512, 12, 8, 49408, 77, 512),
        marks=pytest.mark.slow,
    ),
]


@pytest.mark.parametrize(("name", "args", "config"), CLIPS, ids=["tiny", "b32", "b16"])
def test_keras_hub_clip_preset_gives_the_same_embeddings(tmp_path, name, args, config):
    """Image and text embeddings, and the logits, equal keras-hub's CLIPBackbone's."""
    reference = keras_hub_clip_preset(tmp_path / "clip", *config)
    side, vocab, context = config[1], config[8], config[9]
    model = kapps.create_model(name, weights=tmp_path / "clip", **args)
    images = RNG.uniform(0, 255, (3, side, side, 3)).astype("float32")
    lengths = np.array([3, context, 7])  # the last real token is the end of text (highest id)
    real = np.arange(context)[None] < lengths[:, None]
    token_ids = RNG.integers(1, vocab - 1, (3, context)) * real
    token_ids[np.arange(3), lengths - 1] = vocab - 1
    mean, std = np.array(CLIP_MEAN), np.array(CLIP_STD)
    normalised = ((images / 255.0 - mean) / std).astype("float32")
    ours_images = model.encode_images(images)
    ours_texts = model.encode_texts(token_ids.astype("int32"), real)

    def unit(x):
        x = np.asarray(x)
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    expected_images = unit(reference.get_vision_embeddings(normalised))
    expected_texts = unit(reference.get_text_embeddings(token_ids.astype("int32")))
    np.testing.assert_allclose(ours_images, expected_images, atol=1e-4)
    np.testing.assert_allclose(ours_texts, expected_texts, atol=1e-4)
    assert model.logit_scale() == pytest.approx(float(np.exp(reference.clip_head.logit_scale)))


HUB_TESTED = ("resnet18", "resnet34", "vit_base16", "vit_base32", "vit_large16", "vit_large32")


def _weights_by_layer(model):
    """`{layer name: arrays}` through nested models (DETR's and CLIP's towers are models)."""
    found = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.update(_weights_by_layer(layer))
        elif layer.weights:
            found[layer.name] = layer.get_weights()
    return found


# dense model, its arguments, encoder, where the encoder's weights come from
DENSE = [
    ("unet_efficientnet_b0", {}, "efficientnet_b0", keras.applications.EfficientNetB0),
    ("yolo_n", {"backbone": "mobilenet_025"}, "mobilenet_025", keras.applications.MobileNet),
    ("detr_resnet50", {}, "resnet50", keras.applications.ResNet50),
    ("unet_resnet34", {}, "resnet34", "keras-hub"),
    ("clip_vit_tiny16", {}, "vit_tiny16", "keras-hub"),
]


@pytest.mark.parametrize(("name", "args", "encoder", "source"), DENSE)
def test_dense_models_load_their_encoder_weights(
    keras_cache, tmp_path, name, args, encoder, source
):
    """`encoder_weights=` puts into the dense model's encoder what the encoder alone loads."""
    side = 32 if encoder.startswith("vit") else 64
    shape = (side, side, 3)
    if source == "keras-hub":
        weights = tmp_path / encoder
        if encoder.startswith("vit"):
            keras_hub_vit_preset(weights, "tiny", 16, side)
        else:
            keras_hub_resnet_preset(weights, (3, 4, 6, 3))
    else:
        weights = "imagenet"
        alpha = {"alpha": 0.25} if encoder == "mobilenet_025" else {}
        entry = get_entry(encoder)
        checkpoint = entry.checkpoint({**entry.defaults, "input_shape": shape})
        keras_cache(
            checkpoint.notop, source(weights=None, include_top=False, input_shape=shape, **alpha)
        )
    alone = kapps.create_model(encoder, input_shape=shape, include_top=False, weights=weights)
    shape_arg = {"image_shape": shape} if name.startswith("clip") else {"input_shape": shape}
    model = kapps.create_model(name, **shape_arg, **args, encoder_weights=weights)
    inside, expected = _weights_by_layer(model), _weights_by_layer(alone)
    assert len(expected) > 5
    for layer, arrays in expected.items():
        for got, want in zip(inside[layer], arrays, strict=True):
            np.testing.assert_array_equal(got, want)


def test_encoder_weights_need_a_named_encoder():
    with pytest.raises(ConfigError, match="encoder_weights needs"):
        kapps.create_model("yolo_n", input_shape=(64, 64, 3), encoder_weights="imagenet")
    with pytest.raises(ConfigError, match="encoder_weights needs"):
        kapps.create_model("unet", input_shape=(64, 64, 3), encoder_weights="imagenet")
