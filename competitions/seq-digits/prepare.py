"""seq-digits reads the same files as digits: scikit-learn's digits in Kaggle's layout."""

import importlib.util
from pathlib import Path

DIGITS = Path(__file__).resolve().parents[1] / "digits" / "prepare.py"


def prepare(data_dir):
    spec = importlib.util.spec_from_file_location("digits_prepare", DIGITS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.prepare(data_dir)
