"""svdablate: ablation studies of SVD meta-layers at cluster scale (ICCV'21, ECCV'22).

from svdablate import Study, StudyPlan
plan = StudyPlan.create("demo", seeds=2, epochs=1)   # validated; nothing runs
study = plan.start()                                  # the MLflow parent run and manifest
study.run()                                           # Ray Tune trains every trial
study.table().claims                                  # the report's table and claims
Study.load("results").status()                       # where a study stands, from MLflow
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["Study", "StudyOutcome", "StudyPlan", "TrialConfig", "__version__"]


def __getattr__(name: str) -> Any:
    """`Study`, `StudyPlan`, `StudyOutcome` and `TrialConfig`, imported on first use (the CLI
    starts fast)."""
    if name == "Study":
        from svdablate.study.study import Study

        return Study
    if name == "StudyPlan":
        from svdablate.study.plan import StudyPlan

        return StudyPlan
    if name == "StudyOutcome":
        from svdablate.study.outcome import StudyOutcome

        return StudyOutcome
    if name == "TrialConfig":
        from svdablate.spec.config import TrialConfig

        return TrialConfig
    raise AttributeError(f"module 'svdablate' has no attribute {name!r}")
