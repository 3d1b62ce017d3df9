"""The Examples in the docstrings run and print what they say."""

import doctest
import importlib

import pytest

MODULES = [
    "kapps.registry",
    "kapps.classification.lenet",
    "kapps.classification.mobilenet",
    "kapps.classification.alexnet",
    "kapps.features",
    "kapps.flops",
    "kapps.layers.transformer",
    "kapps.generation.autoencoder",
    "kapps.generation.gan",
    "kapps.generation.diffusion",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), verbose=False)
    assert result.attempted > 0 and result.failed == 0
