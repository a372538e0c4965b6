"""svdablate.models: the networks, each a backbone with one SVD meta-layer (dbn, gcp).

``svdnet.py`` (the model contract) · ``convnet.py`` (the CPU convnet) · ``torchvision_backbones.py``
(ResNets, AlexNet) · ``registry.py`` (``MODELS``, options, ``build_model``). The meta-layer modules
live in ``svdablate.metalayers``, the datasets in ``svdablate.data.datasets``.
"""

from svdablate.models.registry import MODELS, build_model
from svdablate.models.svdnet import APPLICATIONS, SVDNet

__all__ = ["APPLICATIONS", "MODELS", "SVDNet", "build_model"]
