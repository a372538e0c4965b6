"""The pure parts of failing well (issue 28): reading checkpoints without running them, setting
an unreadable one aside, a failed trial's reason, a full disk in an exception chain, a port that
does not speak gRPC, a traceback's spool operation. The end-to-end cases are
tests/e2e/test_faults_*.py."""

import errno
import os
import socket
import threading

import pyarrow.fs
import pytest
import torch

from svdablate.runtime.ray_cluster import speaks_grpc
from svdablate.runtime.tune_runner import disk_full_in
from svdablate.schema import LogText, parse_spool_record, spool_record
from svdablate.store.health import DiskFull, is_disk_full, sqlite_damage
from svdablate.store.trial_errors import describe
from svdablate.training.checkpoint_files import (
    STATE_FILE,
    UnreadableCheckpoint,
    load_tensors,
    read_trial_state,
    set_aside,
)


class Payload:
    def __reduce__(self):
        return (os.getpid, ())


def test_a_file_with_code_is_refused_and_plain_tensors_load(tmp_path):
    torch.save({"model": Payload()}, tmp_path / "code.pt")
    with pytest.raises(UnreadableCheckpoint, match="not plain tensors"):
        load_tensors(tmp_path / "code.pt")
    torch.save({"w": torch.ones(2)}, tmp_path / "plain.pt")
    assert torch.equal(load_tensors(tmp_path / "plain.pt")["w"], torch.ones(2))


def test_a_truncated_or_foreign_state_is_unreadable_and_set_aside(tmp_path):
    checkpoint = tmp_path / "trial" / "checkpoint_000003"
    checkpoint.mkdir(parents=True)
    state = checkpoint / STATE_FILE
    torch.save({"model": {}, "epoch": 3}, state)
    with pytest.raises(UnreadableCheckpoint, match="not a trial's state"):
        read_trial_state(state)
    state.write_bytes(state.read_bytes()[:100])
    with pytest.raises(UnreadableCheckpoint, match="not a readable PyTorch file"):
        read_trial_state(state)
    kept = set_aside(pyarrow.fs.LocalFileSystem(), str(checkpoint))
    assert kept == str(tmp_path / "trial" / "checkpoint_000003-state.pt.unreadable")
    assert not state.exists() and os.path.getsize(kept) == 100


def test_a_failed_trial_is_described_by_its_cause_and_traceback():
    class Wrapped(Exception):  # as Ray's RayTaskError: the trainable's exception is `cause`
        cause = RuntimeError("injected crash at epoch 0")

    summary, trace = describe(Wrapped("Traceback (most recent call last):\n  File x\nboom"))
    assert summary == "RuntimeError: injected crash at epoch 0" and trace.endswith("boom\n")
    text = "Failure # 1\nTraceback:\n  File y\nOSError: [Errno 28] No space left on device\n"
    assert describe(text)[0] == "OSError: [Errno 28] No space left on device"
    assert describe(None) == ("", "")


def test_a_full_disk_is_found_in_an_exception_chain():
    try:
        try:
            raise DiskFull(None, "OSError: [Errno 28] No space left on device")
        except DiskFull as inner:
            raise RuntimeError("a callback failed") from inner
    except RuntimeError as outer:
        assert isinstance(disk_full_in(outer), DiskFull)
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert disk_full_in(ValueError("x")) is None


def test_a_server_that_does_not_speak_grpc_is_told_apart():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer_like_a_web_server():
        connection, _ = listener.accept()
        with connection:
            connection.recv(64)
            connection.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")

    thread = threading.Thread(target=answer_like_a_web_server, daemon=True)
    thread.start()
    try:
        assert not speaks_grpc("127.0.0.1", port)
    finally:
        thread.join(5)
        listener.close()


def test_a_truncated_or_foreign_sqlite_file_is_named_damaged(tmp_path):
    import sqlite3

    db = tmp_path / "mlflow.db"
    with sqlite3.connect(db) as connection:
        connection.execute("create table runs (id text, payload blob)")
        connection.executemany(
            "insert into runs values (?, ?)", [(str(i), b"x" * 4000) for i in range(50)]
        )
    connection.close()
    assert sqlite_damage(db) is None
    whole = db.read_bytes()
    db.write_bytes(whole[: len(whole) // 3])
    assert sqlite_damage(db).startswith("truncated")
    db.write_bytes(os.urandom(len(whole)))
    assert sqlite_damage(db) == "not an SQLite database"


def test_a_traceback_is_a_typed_spool_operation_that_survives_its_json_line():
    op = LogText("trial-1", "Traceback …\nRuntimeError: boom\n", "error.txt")
    record = spool_record(op)
    assert record["op"] == "text"
    assert parse_spool_record(record) == op
    with pytest.raises(ValueError, match="malformed spool operation 'text'"):
        parse_spool_record({"op": "text", "trial": "trial-1"})
