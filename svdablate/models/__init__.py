"""svdablate.models: backbones with an SVD meta-layer (dbn, gcp) and the datasets."""

from svdablate.models.data import DATASETS, DataError, DataInfo, build_datasets
from svdablate.models.metalayer import CovariancePooling, ZCAWhitening
from svdablate.models.networks import APPLICATIONS, MODELS, SVDNet, build_model

__all__ = [
    "APPLICATIONS",
    "DATASETS",
    "MODELS",
    "CovariancePooling",
    "DataError",
    "DataInfo",
    "SVDNet",
    "ZCAWhitening",
    "build_datasets",
    "build_model",
]
