"""Classification builders. Importing this package registers them."""

from kapps.classification.alexnet import alexnet
from kapps.classification.efficientnet import efficientnet
from kapps.classification.googlenet import googlenet
from kapps.classification.lenet import lenet5
from kapps.classification.mobilenet import mobilenet
from kapps.classification.resnet import resnet
from kapps.classification.vgg import vgg
from kapps.classification.vit import vit

__all__ = ["alexnet", "efficientnet", "googlenet", "lenet5", "mobilenet", "resnet", "vgg", "vit"]
