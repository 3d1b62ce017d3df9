"""Sampling a trained generator and scoring its images: FID, KID, MiFID, conditional accuracy."""

import numpy as np

from kapps.generation import DDPM
from kapps.generation.metrics import fid, kid, mifid


def requested_labels(count, num_classes):
    """The class asked of each of `count` images: 0, 1, …, K−1, 0, 1, … (None: unconditional)."""
    return None if not num_classes else np.arange(count) % num_classes


def sample(model, count, generation, labels=None, seed=0, steps=None):
    """`count` images (0–255) from `model`; a diffusion model samples as `generation` says
    (`steps` overrides its DDIM steps)."""
    options = {}
    if isinstance(model, DDPM):
        options = {
            "sampler": generation.sampler,
            "steps": steps or generation.steps,
            "guidance_scale": generation.guidance_scale,
        }
    return model.sample(count, labels=labels, seed=seed, **options)


def score(extractor, generated, reference, train=None, requested=None, kid_subsets=100):
    """Metrics of `generated` images against real `reference` feature rows (and `train`
    rows for the memorisation distance; default: `reference`)."""
    features = extractor.features(generated)
    kid_mean, kid_std = kid(features, reference, subsets=kid_subsets)
    result = {"fid": fid(features, reference), "kid": kid_mean, "kid_std": kid_std}
    if extractor.name == "inception":
        # Kaggle's threshold (ε = 0.1) is set for Inception's pool; the domain LeNet's
        # non-negative 84-d features sit closer than that for any images at all.
        value, _, distance = mifid(features, reference, train)
        result.update(mifid=value, memorisation_distance=distance)
    result.update(features=extractor.name, images=len(generated))
    if requested is not None and extractor.classifier is not None:
        result["conditional_accuracy"] = float(np.mean(extractor.classify(generated) == requested))
    return result
