"""Where a study's numbers came from: code version, library versions, user, host (MLflow tags)."""

from __future__ import annotations

import platform
import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path

from svdablate.schema import Tag

LIBRARIES = ("svdablate", "torch", "ray", "mlflow")


def library_versions() -> dict[str, str]:
    """The installed version of each of LIBRARIES (one that is not installed is left out)."""
    versions = {}
    for library in LIBRARIES:
        try:
            versions[library] = metadata.version(library)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_commit(path: Path | None = None) -> str | None:
    """The commit of the git checkout holding svdablate's source, if it runs from one."""
    folder = path or Path(__file__).resolve().parents[2]
    try:
        result = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip()
    return commit if len(commit) == 40 else None


@cache
def provenance_tags() -> dict[str, str]:
    """MLflow's own source/user tags plus the git commit, library versions and host."""
    from mlflow.tracking.context.registry import resolve_tags
    from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_SOURCE_NAME, MLFLOW_USER

    context = resolve_tags()  # mlflow.user, mlflow.source.name / type (and git, for scripts)
    tags = {k: v for k, v in context.items() if k.startswith("mlflow.")}
    tags[MLFLOW_SOURCE_NAME] = "svdablate"
    commit = git_commit()
    if commit:
        tags[MLFLOW_GIT_COMMIT] = commit
    else:
        tags.pop(MLFLOW_GIT_COMMIT, None)  # MLflow's guess is the caller's repo, not our code's
    tags.setdefault(MLFLOW_USER, "unknown")
    for library, version in library_versions().items():
        tags[Tag.VERSION_PREFIX + library] = version
    tags[Tag.HOST] = platform.node()
    tags[Tag.PYTHON] = platform.python_version()
    return tags
