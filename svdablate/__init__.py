"""svdablate: ablation studies of SVD meta-layers at cluster scale (ICCV'21, ECCV'22).

from svdablate import Study
study = Study.create("demo", seeds=2, epochs=1)
study.run()
study.table()
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["Study", "StudyOutcome", "TrialConfig", "__version__"]


def __getattr__(name: str) -> Any:
    """`Study`, `StudyOutcome` and `TrialConfig`, imported on first use (the CLI starts fast)."""
    if name in ("Study", "StudyOutcome"):
        from svdablate.study import study

        return getattr(study, name)
    if name == "TrialConfig":
        from svdablate.spec.config import TrialConfig

        return TrialConfig
    raise AttributeError(f"module 'svdablate' has no attribute {name!r}")
