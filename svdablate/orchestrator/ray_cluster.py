"""Which Ray a study runs on, and whether it can hold the study's trials.

Precedence: `--address` > `RAY_ADDRESS` > a local Ray of the study's own. Without either, the CLI
never joins the last `ray start` cluster that `/tmp/ray/ray_current_cluster` names (it may be
dead or someone else's): `ray.init(address="local")` starts a fresh one on loopback. `auto` asks
for that last cluster explicitly; `local` for a fresh one. A concrete address that does not answer
is one line (UserError) within seconds, not a hang.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

from .config import Resources
from .errors import UserError

CONNECT_TIMEOUT_S = 5.0
CURRENT_CLUSTER_FILE = Path("/tmp/ray/ray_current_cluster")  # where `ray start` records itself


def check_reachable(host: str, port: int, what: str, address: str, fix: str) -> None:
    """Open and close a TCP connection; UserError naming the fix when nothing answers."""
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            return
    except OSError as exc:
        raise UserError(
            f"cannot reach the {what} at {address} ({exc.strerror or exc}): {fix}"
        ) from None


def resolve_address(address: str | None) -> str:
    """The address to hand `ray.init`: a concrete one (checked), or "local"."""
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    if address == "local":
        return address
    if address == "auto":
        if not CURRENT_CLUSTER_FILE.exists():
            raise UserError(
                f"--address auto: no Ray cluster recorded in {CURRENT_CLUSTER_FILE}: start one "
                "with `ray start --head`, or omit --address for a local Ray"
            )
        address = CURRENT_CLUSTER_FILE.read_text().strip()
        fix = f"it is gone ({CURRENT_CLUSTER_FILE} is stale): omit --address for a local Ray"
    else:
        fix = "start one with `ray start --head` or omit --address for a local Ray"
    parsed = urlparse(address if "://" in address else f"ray://{address}")
    default_port = 10001 if address.startswith("ray://") else 6379
    try:
        port = parsed.port or default_port
    except ValueError:
        raise UserError(f"--address {address!r} is not host:port or ray://host:port") from None
    check_reachable(parsed.hostname or "", port, "Ray cluster", address, fix)
    return address


def _is_loopback(address: str) -> bool:
    if address == "local":
        return True
    host = urlparse(f"//{address.split('://')[-1]}").hostname or ""
    return host.startswith("127.") or host == "localhost"


def _stay_on_loopback() -> None:
    """Make Ray resolve "this node" to 127.0.0.1, not to the first non-loopback interface.

    Ray turns a 127.0.0.1 cluster address into the machine's outward IP before connecting, unless
    `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` (its switch for single-machine clusters); read when ray
    is first imported, so it is also set on the imported constant (a notebook may have imported
    ray already). The variable is inherited by the processes Ray starts from here.
    """
    import sys

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = False


def connect_ray(address: str | None) -> None:
    """Join the Ray cluster at `address` (or RAY_ADDRESS); start a local one without either."""
    target = resolve_address(address)
    loopback = _is_loopback(target)
    if loopback:
        _stay_on_loopback()
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # MLflow is the record: no TensorBoard/CSV/JSON result files per trial (tensorboardX and its
    # writer thread cost the driver ~0.2 s a study and a file write per report).
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    ray.init(
        address=target,
        # A Ray started here listens on loopback only; a loopback cluster is joined on loopback
        # (Ray otherwise resolves "this node" to the first non-loopback interface).
        _node_ip_address="127.0.0.1" if loopback else None,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
        configure_logging=True,
    )


def release_ray() -> threading.Thread | None:
    """Leave Ray on a thread (None when not joined): Ray stops its processes one after another,
    waiting for each to exit (≈1.5 s on 2 cores), while the driver goes on publishing."""
    import ray

    if not ray.is_initialized():
        return None
    thread = threading.Thread(target=ray.shutdown, name="svdablate-ray-shutdown")
    thread.start()
    return thread


def check_resources(resources: Resources) -> None:
    """UserError when no node of the cluster can ever hold one trial."""
    import ray

    available = ray.cluster_resources()
    if resources.gpus_per_trial > 0 and available.get("GPU", 0) <= 0:
        raise UserError(
            f"the Ray cluster has no GPU but each trial asks for {resources.gpus_per_trial:g}: "
            "pass --gpus-per-trial 0 (CPU) or --smoke, or connect to a GPU cluster with --address"
        )
    if resources.cpus_per_trial > available.get("CPU", 0):
        raise UserError(
            f"each trial asks for {resources.cpus_per_trial:g} CPUs but the Ray cluster has "
            f"{available.get('CPU', 0):g}: lower --cpus-per-trial"
        )
