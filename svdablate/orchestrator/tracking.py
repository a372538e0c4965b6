"""The MLflow store a study writes to: which one, and that it is usable before any trial starts.

Precedence: `--tracking-uri` > `MLFLOW_TRACKING_URI` > `sqlite:///<results-dir>/mlflow.db`.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from .errors import UserError
from .manifest import STORE_FILE, default_tracking_uri
from .ray_cluster import check_reachable

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"


def results_folder(results_dir: str | os.PathLike, *, create: bool) -> Path:
    """The results dir, created when asked; UserError when it is a file or cannot be made."""
    path = Path(results_dir)
    if path.exists() and not path.is_dir():
        raise UserError(f"--results-dir {path} is a file, not a folder: pass a folder")
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = exc.strerror or exc
            raise UserError(
                f"cannot create --results-dir {path} ({reason}): pass a writable folder"
            ) from None
    return path


def resolve_tracking_uri(
    uri: str | None, results_dir: str | os.PathLike, *, create: bool = True
) -> str:
    """The store's URI: flag, else MLFLOW_TRACKING_URI, else the results dir's SQLite file.

    Relative SQLite paths are made absolute (resolved on the driver); a server URI is checked
    as reachable; without `create`, a missing default store is a UserError naming the fix.
    """
    uri = uri or os.environ.get(TRACKING_URI_ENV) or None
    if not uri:
        folder = results_folder(results_dir, create=create)
        if not create and not (folder / STORE_FILE).exists():
            raise UserError(
                f"no MLflow store at {folder / STORE_FILE}: pass the --results-dir of a study "
                f"or --tracking-uri (or set {TRACKING_URI_ENV})"
            )
        return default_tracking_uri(folder)
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        raw = uri[len("sqlite:///") :]
        path = Path(raw) if raw.startswith("/") else Path.cwd() / raw
        if create:
            results_folder(path.parent, create=True)
        elif not path.exists():
            raise UserError(f"no MLflow store at {path}: pass the --tracking-uri of a study")
        return f"sqlite:///{path.resolve()}"
    if parsed.scheme in ("http", "https"):
        check_reachable(
            parsed.hostname or "",
            parsed.port or (443 if parsed.scheme == "https" else 80),
            "MLflow tracking server",
            uri,
            "start it with `mlflow server` or omit --tracking-uri for the local store",
        )
    return uri


def check_store(uri: str) -> None:
    """Open the store once (creating or migrating a SQLite file); UserError when it is unusable."""
    from mlflow import MlflowClient

    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except Exception as exc:  # SQLAlchemy/MLflow errors of a corrupt or foreign file
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"the MLflow store {uri} cannot be opened ({reason}): move the file away or pass "
            "another --results-dir / --tracking-uri"
        ) from None
