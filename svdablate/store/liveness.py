"""Whether a study's driver is alive, read from its spool's lock; a killed driver's study is
marked interrupted, its running trials with it, the next time `status` reads it."""

from __future__ import annotations

import fcntl
from pathlib import Path

from mlflow.tracking import MlflowClient

from svdablate.schema import StudyStatus, Tag
from svdablate.store.spool import apply_parent_status


def driver_gone(spool: Path) -> bool:
    """Whether the study's driver died without closing its spool (kill -9, a lost node): the
    spool is there but nobody holds its lock (a driver holds it for as long as it runs)."""
    try:
        handle = open(spool, "rb")  # noqa: SIM115 (closed below)
    except OSError:
        return False  # no spool: the study ended, or its driver has not opened it yet
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return False  # a driver holds it
        fcntl.flock(handle, fcntl.LOCK_UN)
    return True


def settle_abandoned(client: MlflowClient, parent_run_id: str, spool: Path) -> bool:
    """Mark a study whose driver was killed interrupted, its running child runs with it, as a
    driver that stops on a signal does; True when it was. (The spool stays for `resume`.)"""
    parent = client.get_run(parent_run_id)
    if parent.data.tags.get(Tag.STATUS, StudyStatus.RUNNING) != StudyStatus.RUNNING:
        return False
    if not driver_gone(spool):
        return False
    apply_parent_status(client, parent_run_id, StudyStatus.INTERRUPTED)
    return True
