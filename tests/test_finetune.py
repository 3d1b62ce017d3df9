"""Fine-tuning: the frozen-head phase, the backbone's smaller learning rate, the config keys."""

import keras
import numpy as np
import pytest

import kapps
from kapps.errors import ConfigError
from pipelines.config import load_config
from pipelines.finetune import set_frozen, with_backbone_lr
from pipelines.prepare import prepare
from pipelines.train import train
from tests.conftest import REPO


def _two_layer_model():
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3, name="backbone")(inputs)
    outputs = keras.layers.Dense(2, name="predictions")(hidden)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_backbone_lr_mult_scales_the_pretrained_layers_step(optimizer):
    model = _two_layer_model()
    base = (
        keras.optimizers.SGD(0.1)
        if optimizer == "sgd"
        else keras.optimizers.AdamW(0.1, weight_decay=0.0)
    )
    scaled = with_backbone_lr(base, [model.get_layer("backbone")], 0.25)
    before = [np.array(v) for v in model.trainable_variables]
    scaled.apply(
        [keras.ops.ones_like(v) for v in model.trainable_variables], model.trainable_variables
    )
    steps = [
        np.abs(np.array(v) - b).mean()
        for v, b in zip(model.trainable_variables, before, strict=True)
    ]
    backbone, head = steps[:2], steps[2:]  # kernel and bias of each layer
    np.testing.assert_allclose(backbone, [0.25 * h for h in head], rtol=1e-3)
    assert head[0] == pytest.approx(0.1, rel=1e-3)  # the head keeps the full rate


def test_the_layerwise_optimizer_survives_saving(tmp_path):
    model = _two_layer_model()
    optimizer = with_backbone_lr(keras.optimizers.AdamW(1e-3), [model.get_layer("backbone")], 0.1)
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(np.ones((4, 4)), np.ones((4, 2)), epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.optimizer.lr_mult == 0.1 and loaded.optimizer.scaled_layers == ["backbone"]


def test_freezing_puts_batch_norm_in_inference_mode():
    model = kapps.create_model("resnet18", input_shape=(32, 32, 3), num_classes=2)
    body = [layer for layer in model.layers if layer.weights and layer.name != "predictions"]
    set_frozen(body, True)
    assert [w.path for w in model.trainable_weights] == ["predictions/kernel", "predictions/bias"]
    bn = model.get_layer("conv1_bn")
    stats = [np.array(w) for w in bn.weights]
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    model(images, training=True)
    for weight, before in zip(bn.weights, stats, strict=True):
        np.testing.assert_array_equal(np.array(weight), before)


def test_freeze_epochs_then_the_whole_model_trains(tmp_path, competition):
    """Epoch 1 moves the head only; epoch 2 moves the backbone too."""
    comp = competition("digits")
    source = kapps.create_model("mobilenet_025", input_shape=(32, 32, 3), num_classes=4)
    source.save(tmp_path / "pretrained.keras")
    cfg = load_config(
        comp,
        [
            f"run.dir={tmp_path / 'runs'}",
            "model.name=mobilenet_025",
            f"model.weights={tmp_path / 'pretrained.keras'}",
            "data.channels=3",
            "train.epochs=2",
            "train.freeze_epochs=1",
            "train.backbone_lr_mult=0.5",
            "train.warmup_epochs=0",
            "train.patience=0",
        ],
    )
    prepare(cfg, log=lambda _: None)
    snapshots, optimizers = [], []

    class Snapshot(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            layers = ("conv1", "conv_pw_13_bn", "predictions")
            snapshots.append({n: self.model.get_layer(n).get_weights() for n in layers})
            optimizers.append(self.model.optimizer)

    lines = []
    train(cfg, log=lines.append, callbacks=[Snapshot()], verbose=0)
    assert any("pretrained layers frozen" in str(line) for line in lines)
    after_frozen, after_all = snapshots
    first, second = optimizers  # one optimiser through both phases, its state kept
    assert first is second and first.lr_mult == 0.5
    assert "conv1" in first.scaled_layers and "predictions" not in first.scaled_layers
    for name in ("conv1", "conv_pw_13_bn"):  # kernel; gamma, beta and moving statistics
        for got, want in zip(after_frozen[name], source.get_layer(name).get_weights(), strict=True):
            np.testing.assert_array_equal(got, want)
        assert not np.allclose(after_all[name][0], after_frozen[name][0])
    assert after_frozen["predictions"][0].shape == (1024 // 4, 10)  # a new 10-class head
    best = keras.saving.load_model(next((tmp_path / "runs" / "digits").iterdir()) / "best.keras")
    assert all(layer.trainable for layer in best.layers)  # saved unfrozen, whichever phase won


def test_finetuning_keys_need_weights_and_a_phase_to_unfreeze():
    comp = REPO / "competitions" / "digits"
    with pytest.raises(ConfigError, match="need model.weights"):
        load_config(comp, ["train.freeze_epochs=2"])
    with pytest.raises(ConfigError, match="must be below train.epochs"):
        load_config(comp, ["model.weights=imagenet", "train.freeze_epochs=40"])
