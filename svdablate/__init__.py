"""svdablate: ablation studies of SVD meta-layers at cluster scale (ICCV'21, ECCV'22)."""

__version__ = "0.1.0"
