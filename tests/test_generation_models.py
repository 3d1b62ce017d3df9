"""The generation family's builders and metrics: papers' sizes, losses that fall,
sampling, saving, and the metrics against their definitions."""

import keras
import numpy as np
import pytest
from scipy import linalg
from sklearn.datasets import load_digits

import kapps
from kapps.generation.ddpm_unet import ddpm_unet
from kapps.generation.diffusion import noise_schedule
from kapps.generation.metrics import (
    fid,
    frechet_distance,
    kid,
    memorisation_distance,
    mifid,
    mmd2_unbiased,
)

GENERATION = kapps.list_models(task="generation")


def images(count, shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (count, *shape)).astype("float32")


def digits(count):
    """scikit-learn's 8×8 digits as 0–255 pixels."""
    return (load_digits().images[:count, :, :, None] * 255 / 16).astype("float32")


# Every registered generation model ---------------------------------------------------
@pytest.mark.parametrize("name", GENERATION)
def test_every_generation_model_trains_samples_and_round_trips(name, tmp_path):
    entry = kapps.get_entry(name)
    model = kapps.create_model(name, **entry.test_kwargs)
    shape = entry.test_kwargs["image_shape"]
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    before = [w.copy() for w in model.get_weights()]
    logs = model.train_on_batch(images(4, shape), return_dict=True)
    assert np.isfinite(logs["loss"])
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    found = model.sample(3, seed=1)
    assert found.shape == (3, *shape) and found.min() >= 0 and found.max() <= 255
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.sample(3, seed=1), found, atol=1e-3)


@pytest.mark.parametrize("name", ["autoencoder", "vae", "ddpm"])
def test_a_few_steps_on_one_batch_lower_the_loss(name):
    entry = kapps.get_entry(name)
    model = kapps.create_model(name, **entry.test_kwargs)
    batch = digits(8)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    keras.utils.set_random_seed(0)
    first = model.evaluate(batch, verbose=0, return_dict=True)["loss"]
    for _ in range(60):
        model.train_on_batch(batch)
    # Binary cross-entropy on grey pixels cannot reach 0; 15 % lower is learning.
    assert model.evaluate(batch, verbose=0, return_dict=True)["loss"] < 0.85 * first


@pytest.mark.parametrize("name", ["dcgan", "wgan_gp"])
def test_a_gan_discriminator_learns_to_tell_one_batch_from_the_generator(name):
    entry = kapps.get_entry(name)
    model = kapps.create_model(name, **entry.test_kwargs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5))
    batch = images(8, entry.test_kwargs["image_shape"])
    d_loss = [model.train_on_batch(batch, return_dict=True)["d_loss"] for _ in range(15)]
    assert d_loss[-1] < d_loss[0]


def trainable(model):
    return [w.numpy() for w in model.trainable_weights]


def changed(weights, model):
    return any(not np.array_equal(a, b) for a, b in zip(weights, trainable(model), strict=True))


def test_wgan_gp_moves_the_generator_only_every_fifth_step():
    entry = kapps.get_entry("wgan_gp")
    model = kapps.create_model("wgan_gp", **entry.test_kwargs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3, beta_1=0.0, beta_2=0.9))
    batch = images(8, entry.test_kwargs["image_shape"])
    moved = []
    for _ in range(7):
        g, d = trainable(model.generator), trainable(model.discriminator)
        logs = model.train_on_batch(batch, return_dict=True)
        assert logs["gradient_penalty"] >= 0
        moved.append((changed(g, model.generator), changed(d, model.discriminator)))
    generator, critic = zip(*moved, strict=True)
    assert generator == (True, False, False, False, False, True, False)
    assert all(critic)


@pytest.mark.parametrize("num_classes", [None, 3])
def test_the_critic_input_gradient_equals_autodiff(num_classes):
    import tensorflow as tf

    from kapps.generation.gan import critic_input_gradient

    model = kapps.create_model(
        "wgan_gp", image_shape=(16, 16, 1), latent_dim=8, width=4, num_classes=num_classes
    )
    rng = np.random.default_rng(0)
    for layer in model.discriminator.layers:  # layer normalisation that is not the identity
        if layer.name.endswith("_ln"):
            layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape))
            layer.beta.assign(rng.normal(0, 0.3, layer.beta.shape))
    x = tf.constant(rng.normal(0, 1, (4, 16, 16, 1)).astype("float32"))
    labels = tf.constant([0, 1, 2, 1]) if num_classes else None
    with tf.GradientTape() as tape:
        tape.watch(x)
        score = tf.reduce_sum(model.discriminator([x, labels] if num_classes else x))
    expected = tape.gradient(score, x).numpy()
    found = np.asarray(critic_input_gradient(model.discriminator, x, labels))
    np.testing.assert_allclose(found, expected, atol=1e-6 * np.abs(expected).max())


def test_the_generator_loss_does_not_train_the_discriminator():
    """The dcgan step's critic change equals a step on the critic's loss alone."""
    entry = kapps.get_entry("dcgan")
    model = kapps.create_model("dcgan", seed=3, **entry.test_kwargs)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    batch = images(8, entry.test_kwargs["image_shape"])
    d_before = model.discriminator.get_weights()
    model.train_on_batch(batch)
    d_step = [a - b for a, b in zip(model.discriminator.get_weights(), d_before, strict=True)]

    twin = kapps.create_model("dcgan", seed=3, **entry.test_kwargs)
    twin.generator.set_weights(model.generator.get_weights())
    twin.discriminator.set_weights(d_before)
    twin.steps.assign(0)
    twin.compute_loss = _critic_only(twin)
    twin.compile(optimizer=keras.optimizers.SGD(0.1))
    twin.train_on_batch(batch)
    twin_step = [a - b for a, b in zip(twin.discriminator.get_weights(), d_before, strict=True)]
    for a, b in zip(d_step, twin_step, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def _critic_only(gan):
    from keras import ops

    def loss(x=None, y=None, y_pred=None, sample_weight=None, training=True):
        real = ops.cast(x, "float32") / 127.5 - 1.0
        z = keras.random.normal((ops.shape(real)[0], gan.latent_dim), seed=gan.seed_generator)
        fake = ops.stop_gradient(gan.generator(z, training=training))
        fake_score = gan.discriminator(fake, training=training)
        return ops.mean(ops.softplus(-y_pred)) + ops.mean(ops.softplus(fake_score))

    return loss


# The papers' configurations ----------------------------------------------------------
def test_vae_paper_mnist_model_size():
    model = kapps.create_model("vae", image_shape=(28, 28, 1), latent_dim=20, architecture="mlp")
    # 784·500+500 + 500·20·2+40 + 20·500+500 + 500·784+784 (Kingma & Welling, appendix C)
    assert model.count_params() == 815_824


def test_ddpm_cifar10_network_size():
    assert ddpm_unet((32, 32, 3)).count_params() == 35_746_307  # the paper: 35.7 M


def test_dcgan_follows_figure_1():
    model = kapps.create_model("dcgan")
    relu = [layer.output.shape[1:] for layer in model.generator.layers if "relu" in layer.name]
    assert relu == [(4, 4, 1024), (8, 8, 512), (16, 16, 256), (32, 32, 128)]
    assert model.generator.output_shape == (None, 64, 64, 3)
    convs = [layer for layer in model.discriminator.layers if layer.name.startswith("conv_")]
    widths = [layer.filters for layer in convs if hasattr(layer, "filters")]
    assert widths == [128, 256, 512, 1024]
    norms = [layer.name for layer in model.discriminator.layers if layer.name.endswith("_bn")]
    assert norms == ["conv_1_bn", "conv_2_bn", "conv_3_bn"]  # none on the input layer
    critic = kapps.create_model("wgan_gp")
    assert not [layer for layer in critic.discriminator.layers if "bn" in layer.name]


def test_noise_schedules():
    linear = noise_schedule("linear", 1000)
    assert linear[0] == pytest.approx(1e-4) and linear[-1] == pytest.approx(0.02)
    cosine = noise_schedule("cosine", 1000)
    alpha_bar = np.cumprod(1 - cosine)
    t = np.arange(1, 1001) / 1000
    expected = np.cos((t + 0.008) / 1.008 * np.pi / 2) ** 2 / np.cos(0.008 / 1.008 * np.pi / 2) ** 2
    np.testing.assert_allclose(alpha_bar[:-5], expected[:-5], rtol=1e-6)  # the end is clipped


def test_ddim_is_deterministic_and_ddpm_visits_every_step():
    entry = kapps.get_entry("ddpm")
    model = kapps.create_model("ddpm", num_classes=3, **entry.test_kwargs)
    noise = np.random.default_rng(0).standard_normal((2, 8, 8, 1)).astype("float32")
    a, _ = model.denoise(noise, np.array([0, 2]), "ddim", steps=5)
    b, kept = model.denoise(noise, np.array([0, 2]), "ddim", steps=5, keep=3)
    np.testing.assert_array_equal(a, b)
    assert len(kept) == 3
    assert list(model.timesteps_of("ddim", 5)) == [19, 14, 10, 5, 0]
    assert len(model.timesteps_of("ddpm", 5)) == 20
    with pytest.raises(ValueError, match="needs labels"):
        model.sample(2)
    with pytest.raises(ValueError, match="labels must lie"):
        model.sample(2, labels=3)


# Metrics ---------------------------------------------------------------------------
def _random_covariance(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T + d * np.eye(d)


def test_frechet_distance_matches_the_closed_form_for_gaussians():
    rng = np.random.default_rng(0)
    d = 5
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = _random_covariance(rng, d), _random_covariance(rng, d)
    # Tr((Σ1Σ2)^½) = Tr((Σ1^½ Σ2 Σ1^½)^½), computed from eigenvalues of a symmetric matrix
    root = linalg.sqrtm(s1).real
    inner = np.sqrt(np.linalg.eigvalsh(root @ s2 @ root)).sum()
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * inner
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0, abs=1e-8)
    # from samples it converges to the same
    x = rng.multivariate_normal(mu1, s1, 200_000)
    y = rng.multivariate_normal(mu2, s2, 200_000)
    assert fid(x, y) == pytest.approx(expected, rel=0.02)


def test_kid_is_unbiased_on_two_samples_of_one_distribution():
    rng = np.random.default_rng(0)
    values = [mmd2_unbiased(rng.normal(size=(40, 6)), rng.normal(size=(40, 6))) for _ in range(400)]
    error = np.std(values) / np.sqrt(len(values))
    assert abs(np.mean(values)) < 3 * error  # unbiased: zero on average
    shifted = [
        mmd2_unbiased(rng.normal(size=(40, 6)), rng.normal(0.5, size=(40, 6))) for _ in range(50)
    ]
    assert np.mean(shifted) > 10 * error
    mean, std = kid(
        rng.normal(size=(300, 6)), rng.normal(size=(300, 6)), subsets=10, subset_size=100
    )
    assert abs(mean) < 3 * std + 1e-3


def test_mifid_penalises_memorised_images_only_below_the_threshold():
    rng = np.random.default_rng(0)
    train = rng.uniform(0, 1, (50, 8))
    copies = train[rng.integers(0, 50, 60)] + rng.normal(0, 0.05, (60, 8))  # near copies
    value, plain, distance = mifid(copies, train)
    assert distance == pytest.approx(memorisation_distance(copies, train))
    assert 0 < distance < 0.1 and value == pytest.approx(plain / distance)
    far = np.zeros((10, 8))
    far[:, 0], train_far = 1.0, np.zeros((10, 8))
    train_far[:, 1] = 1.0
    assert memorisation_distance(far, train_far) == pytest.approx(1.0)
    value, plain, _ = mifid(np.vstack([far, far + 0.01]), np.vstack([train_far, train_far + 0.01]))
    assert value == pytest.approx(plain)  # a distance ≥ 0.1 counts as 1
    assert memorisation_distance(-train, train) == pytest.approx(0, abs=1e-12)  # 1 − |cos|
    with_zero_rows = np.vstack([train[:5], np.zeros((3, 8))])
    assert memorisation_distance(with_zero_rows, train) == pytest.approx(0, abs=1e-12)
