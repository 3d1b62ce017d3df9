"""Sample-quality metrics on features: FID, KID and Kaggle's MiFID.

All three compare feature vectors (an Inception-v3 pool, or any other
extractor; the number is only comparable between runs that used the same one):

- FID (Heusel et al. 2017): the Fréchet distance between Gaussians fitted to
  the two sets, ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½).
- KID (Bińkowski et al. 2018): the unbiased estimate of the squared MMD under
  the kernel k(x, y) = (xᵀy / d + 1)³, averaged over random subsets (the
  paper's 100 subsets of 1,000); unlike FID it has no bias from the sample size.
- MiFID (Kaggle's "I'm Something of a Painter Myself"; Bai et al. 2021): FID
  divided by the memorisation distance, the mean over generated images of the
  smallest cosine distance 1 − |cos| to any training image, thresholded: a
  distance of at least ε = 0.1 counts as 1 (no penalty), a smaller one divides
  the FID by itself. Feature rows that sum to zero are left out of the
  distance, as Kaggle's scorer does.
"""

import warnings

import numpy as np
from scipy import linalg

MEMORISATION_EPSILON = 0.1


def gaussian_statistics(features):
    """Mean and covariance (rows are samples) in float64."""
    features = np.asarray(features, dtype="float64")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """The Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    with warnings.catch_warnings():  # a singular product is handled below
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean, _ = linalg.sqrtm(sigma1 @ sigma2, disp=False)
    if not np.isfinite(covmean).all():  # a singular product: nudge both diagonals
        offset = np.eye(len(sigma1)) * 1e-6
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fid(features_a, features_b):
    """FID between two sets of feature rows."""
    return frechet_distance(*gaussian_statistics(features_a), *gaussian_statistics(features_b))


def mmd2_unbiased(x, y):
    """The unbiased squared MMD of two samples under KID's cubic polynomial kernel."""
    x, y = np.asarray(x, "float64"), np.asarray(y, "float64")
    d = x.shape[1]
    k_xx = (x @ x.T / d + 1) ** 3
    k_yy = (y @ y.T / d + 1) ** 3
    k_xy = (x @ y.T / d + 1) ** 3
    m, n = len(x), len(y)
    return float(
        (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
        + (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
        - 2 * k_xy.mean()
    )


def kid(features_a, features_b, subsets=100, subset_size=1000, seed=0):
    """KID: `(mean, standard deviation)` of the unbiased MMD² over random subsets
    (each at most the smaller set's size)."""
    a, b = np.asarray(features_a), np.asarray(features_b)
    size = min(subset_size, len(a), len(b))
    if size < 2:
        raise ValueError("KID needs at least two feature rows on each side")
    rng = np.random.default_rng(seed)
    values = [
        mmd2_unbiased(
            a[rng.choice(len(a), size, replace=False)], b[rng.choice(len(b), size, replace=False)]
        )
        for _ in range(subsets)
    ]
    return float(np.mean(values)), float(np.std(values))


def _unit_rows(features):
    features = np.asarray(features, dtype="float64")
    features = features[features.sum(axis=1) != 0]
    return features / np.linalg.norm(features, axis=1, keepdims=True)


def memorisation_distance(generated, train, block=1024):
    """Mean over generated rows of the smallest cosine distance 1 − |cos| to a training row."""
    gen, ref = _unit_rows(generated), _unit_rows(train)
    closest = [
        (1 - np.abs(gen[i : i + block] @ ref.T)).min(axis=1) for i in range(0, len(gen), block)
    ]
    return float(np.concatenate(closest).mean())


def mifid(generated, real, train=None, epsilon=MEMORISATION_EPSILON):
    """Kaggle's MiFID: `(mifid, fid, memorisation distance)`; `train`: the images the
    generator may have memorised (default: `real`)."""
    value = fid(generated, real)
    distance = memorisation_distance(generated, real if train is None else train)
    thresholded = distance if distance < epsilon else 1.0
    return value / (thresholded + 1e-15), value, distance
