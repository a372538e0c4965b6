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
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from svdablate.errors import UserError
from svdablate.spec.config import Resources

CONNECT_TIMEOUT_S = 5.0
RAY_ADDRESS_ENV = "RAY_ADDRESS"
FRAME_HEADER_BYTES, SETTINGS_FRAME_TYPE = 9, 4  # HTTP/2 (RFC 9113 §4.1, §6.5)
EMPTY_SETTINGS_FRAME = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
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
    """The address to hand `ray.init`: a concrete one (checked: something answers there, and
    it speaks Ray's gRPC), or "local"."""
    from_env = not address and bool(os.environ.get(RAY_ADDRESS_ENV))
    address = address or os.environ.get(RAY_ADDRESS_ENV) or "local"
    if address == "local":
        return address
    source = f"{RAY_ADDRESS_ENV}={address}" if from_env else f"--address {address}"
    leave = (
        f"unset {RAY_ADDRESS_ENV} for a local Ray" if from_env else "omit --address for a local Ray"
    )
    if address == "auto":
        if not CURRENT_CLUSTER_FILE.exists():
            raise UserError(
                f"{source}: no Ray cluster recorded in {CURRENT_CLUSTER_FILE}: start one with "
                f"`ray start --head`, or {leave}"
            )
        address = CURRENT_CLUSTER_FILE.read_text().strip()
        fix = f"the cluster it names is gone ({CURRENT_CLUSTER_FILE} is stale): {leave}"
    else:
        fix = f"start one with `ray start --head`, or {leave}"
    parsed = urlparse(address if "://" in address else f"ray://{address}")
    default_port = 10001 if address.startswith("ray://") else 6379
    try:
        port = parsed.port or default_port
    except ValueError:
        raise UserError(f"{source} is not host:port or ray://host:port") from None
    host = parsed.hostname or ""
    check_reachable(host, port, "Ray cluster", address, fix)
    if not speaks_grpc(host, port):
        raise UserError(
            f"{address} ({source}) answers, but not as a Ray cluster (another server holds "
            f"port {port}): {fix}"
        )
    if not address.startswith("ray://"):
        send_token_if_asked(address)
    return address


def speaks_grpc(host: str, port: int) -> bool:
    """Whether the server at host:port speaks HTTP/2 as gRPC servers do (Ray's GCS, its client
    server): it answers the HTTP/2 preface with a SETTINGS frame. Ray's own client would
    instead retry a foreign server (a web server on that port) for minutes."""
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + EMPTY_SETTINGS_FRAME
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S) as connection:
            connection.sendall(preface)
            head = b""
            while len(head) < FRAME_HEADER_BYTES:
                chunk = connection.recv(FRAME_HEADER_BYTES - len(head))
                if not chunk:
                    break
                head += chunk
    except OSError:
        return False
    return len(head) == FRAME_HEADER_BYTES and head[3] == SETTINGS_FRAME_TYPE


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


#: A Ray started here: no idle workers prestarted for the first driver. Trials run in Tune's
#: actors, which never take them: they only cost ~1.4 CPU-s of process start and imports a study.
LOCAL_RAY_CONFIG = {"prestart_worker_first_driver": False}


#: How long a cluster whose GCS answers may take to register its first live node (a `ray start
#: --head` still starting: a script that waits for its port and runs the driver).
FIRST_NODE_WAIT_S = 60.0


def _node_ips(address: str) -> set[str] | None:
    """The addresses the cluster's live nodes registered (None when the GCS does not say)."""
    from ray._raylet import GcsClient

    try:
        nodes = GcsClient(address=address).get_all_node_info(timeout=CONNECT_TIMEOUT_S)
    except Exception:  # ray.init reports what is wrong with the cluster
        return None
    return {node.node_manager_address for node in nodes.values() if node.state == 0}


def _registered_node_ips(address: str) -> set[str] | None:
    """`_node_ips` once a node has registered: a GCS with none yet is a cluster still starting
    (taken for a loopback one, the driver looked for a node at 127.0.0.1 and found none)."""
    deadline = time.monotonic() + FIRST_NODE_WAIT_S
    ips = _node_ips(address)
    while ips == set() and time.monotonic() < deadline:
        time.sleep(0.5)
        ips = _node_ips(address)
    return ips


def _this_node_ip(target: str) -> str | None:
    """The address this driver's node is known by: 127.0.0.1 for a Ray of its own or a cluster
    whose nodes registered loopback; a `ray start` cluster joined by loopback registered the
    machine's outward address, which this driver must use too (Ray otherwise finds no node
    matching '127.0.0.1'); None (Ray's own choice) for a cluster elsewhere."""
    if not _is_loopback(target):
        return None
    if target == "local":
        return "127.0.0.1"
    ips = _registered_node_ips(target)
    if not ips or any(_is_loopback(ip) for ip in ips):
        return "127.0.0.1"
    from ray.util import get_node_ip_address

    outward = get_node_ip_address()
    return outward if outward in ips else sorted(ips)[0]


def connect_ray(address: str | None) -> None:
    """Join the Ray cluster at `address` (or RAY_ADDRESS); start a local one without either."""
    target = resolve_address(address)
    node_ip = _this_node_ip(target)
    if node_ip == "127.0.0.1":
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
        _node_ip_address=node_ip,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
        configure_logging=True,
        _system_config=LOCAL_RAY_CONFIG if target == "local" else None,
    )


AUTH_MODE_ENV = "RAY_AUTH_MODE"
TOKEN_FIX = (
    "use the cluster's token: copy the head's ~/.ray/auth_token here, or set RAY_AUTH_TOKEN or "
    "RAY_AUTH_TOKEN_PATH"
)


def _refuses(address: str) -> bool:
    """Whether the cluster's GCS refuses this process's credentials (one RPC, ~0.03 s; Ray's
    C++ client logs the refusal on stderr, which is not the user's business here)."""
    from ray._raylet import GcsClient
    from ray.exceptions import AuthenticationError

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            GcsClient(address=address).internal_kv_get(
                b"session_name", namespace=b"session", timeout=CONNECT_TIMEOUT_S
            )
    except AuthenticationError:
        return True
    except Exception:  # anything else is ray.init's to report
        return False
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return False


def _token_at_hand() -> bool:
    """Whether Ray finds a token here: RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH names (Ray
    aborts the process when that file is missing), else ~/.ray/auth_token."""
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return True
    named = os.environ.get("RAY_AUTH_TOKEN_PATH")
    path = Path(named) if named else Path.home() / ".ray" / "auth_token"
    return path.is_file() and path.stat().st_size > 0


def send_token_if_asked(address: str) -> None:
    """Send Ray's auth token to a cluster that asks for one; UserError when there is none to
    send or the cluster refuses it.

    Ray 2.60's `ray start --head` turns token auth on whenever a token exists (~/.ray/auth_token),
    but a client given an explicit address sends none unless RAY_AUTH_MODE=token: it retries for
    20 s, then raises. A cluster without token auth must not be sent one (this process's own
    server would then ask its workers for a token they do not have), so the cluster is asked.
    """
    if os.environ.get(AUTH_MODE_ENV) or not _refuses(address):
        return  # the user chose, or the cluster takes this process as it is
    if not _token_at_hand():
        raise UserError(f"the Ray cluster at {address} asks for a token: {TOKEN_FIX}")
    from ray._raylet import Config

    os.environ[AUTH_MODE_ENV] = "token"  # as Ray's own local clusters do (ray.init, ray start)
    Config.initialize("")  # Ray reads its config once: make it read the mode again
    if _refuses(address):
        raise UserError(f"the Ray cluster at {address} refused this machine's token: {TOKEN_FIX}")


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
