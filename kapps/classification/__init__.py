"""Classification builders. Importing this package registers them."""

from kapps.classification.lenet import lenet5

__all__ = ["lenet5"]
