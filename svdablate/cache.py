"""Where svdablate keeps files it can always remake: `$SVDABLATE_CACHE_DIR`, else
`$XDG_CACHE_HOME/svdablate`, else `~/.cache/svdablate`. Deleting the folder loses nothing."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

CACHE_DIR_ENV = "SVDABLATE_CACHE_DIR"


def cache_dir() -> Path:
    """The cache folder (not created here)."""
    root = os.environ.get(CACHE_DIR_ENV)
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "svdablate"


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Write `path` through `write(partial_path)` and move it into place (readers see the whole
    file or none); an unwritable cache is skipped silently (the caller remakes what it needs)."""
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(partial)
        os.replace(partial, path)
    except OSError:
        with contextlib.suppress(OSError):  # the folder may not even be one
            partial.unlink(missing_ok=True)
