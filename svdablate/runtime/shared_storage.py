"""Whether every node that will run trials sees the driver's Tune storage, checked before any trial.

Tune keeps each trial's checkpoints under its storage path; on several nodes that path must be
one shared filesystem (NFS, a cluster mount) or a cloud URI. A node that sees another folder
there trains a whole trial, then fails at its first checkpoint ("Unable to set up cluster
storage") and is retried from scratch. So a probe task on each such node writes a file under
the path and the driver reads it back; a node whose file the driver does not find is one line
naming `--storage-path`, before the study starts.
"""

from __future__ import annotations

import socket
import uuid
from pathlib import Path
from typing import Any

from svdablate.errors import UserError
from svdablate.spec.config import Resources

PROBE_DIR = ".svdablate-storage-probe"
PROBE_TIMEOUT_S = 120.0  # a node may start a worker process (imports) for its probe


def trial_nodes(nodes: list[dict[str, Any]], resources: Resources) -> list[dict[str, Any]]:
    """The live nodes (`ray.nodes()`) with the CPUs and GPUs one trial asks for."""
    return [
        node
        for node in nodes
        if node.get("Alive")
        and node["Resources"].get("CPU", 0) >= resources.cpus_per_trial
        and node["Resources"].get("GPU", 0) >= resources.gpus_per_trial
    ]


def _write_probe(storage: str, name: str) -> str:
    """On a node: write `name` under the storage's probe folder; the node's host name, or the
    error that stopped it."""
    try:
        folder = Path(storage) / PROBE_DIR
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(name)
    except OSError as exc:
        return f"error: {exc}"
    return socket.gethostname()


def check_shared_storage(storage: str, resources: Resources) -> None:
    """UserError naming `--storage-path` when a node that may run a trial does not share the
    driver's view of `storage`. Nothing to check for a cloud URI or when every such node is
    the driver's own."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if "://" in storage:
        return  # s3://, gs://, …: every node reaches it the same way
    here = ray.get_runtime_context().get_node_id()
    nodes = [n for n in trial_nodes(ray.nodes(), resources) if n["NodeID"] != here]
    if not nodes:
        return
    token = uuid.uuid4().hex[:12]
    probe = ray.remote(num_cpus=0, max_retries=0)(_write_probe)
    names = {node["NodeID"]: f"{token}-{node['NodeID'][:12]}" for node in nodes}
    pending = {
        probe.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        ).remote(storage, names[node["NodeID"]]): node
        for node in nodes
    }
    ready, late = ray.wait(list(pending), num_returns=len(pending), timeout=PROBE_TIMEOUT_S)
    folder = Path(storage) / PROBE_DIR
    blind = [
        f"{pending[ref]['NodeManagerAddress']} ({ray.get(ref)})"
        for ref in ready
        if not (folder / names[pending[ref]["NodeID"]]).is_file()
    ]
    for name in names.values():
        (folder / name).unlink(missing_ok=True)
    if blind:
        raise UserError(
            f"Tune's storage {storage} is not shared: node(s) {', '.join(blind)} wrote there and "
            "this driver does not see it; pass --storage-path on a filesystem every node mounts "
            "(NFS, a cluster volume) or an s3:// or gs:// URI"
        )
    if late:
        unseen = ", ".join(pending[ref]["NodeManagerAddress"] for ref in late)
        raise UserError(
            f"node(s) {unseen} did not answer the storage check within {PROBE_TIMEOUT_S:g} s: "
            "check them with `ray status`, then pass --storage-path on a filesystem every node "
            "mounts"
        )
