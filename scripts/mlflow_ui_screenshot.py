"""Screenshot a finished study's parent run in the MLflow UI (the README's picture).

    python scripts/mlflow_ui_screenshot.py                      # runs a small demo study first
    python scripts/mlflow_ui_screenshot.py --results-dir results --out docs/mlflow-ui.png

Runs (or takes, with --results-dir) a finished study, publishes it on its parent run
(`svdablate.report.publish_study`: a no-op for what is already there), starts `svdablate ui`
on a free loopback port and drives headless Chromium over the DevTools protocol (aiohttp, an
MLflow dependency): the run opens in MLflow's model-training view on its `--tab` (default: the
report page under Artifacts), the MLflow Assistant panel is closed, and the page is saved as
PNG. Needs Debian's Chromium (`apt-get install -y chromium`) or --chromium PATH. Redo it after
an MLflow UI change.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from svdablate.cli.read_commands import run_url
from svdablate.report import latest_parent, parent_info, publish_study
from svdablate.report.tables.layout_specs import default_layout

DEMO = ["--rows", "SVD,SVD+NOG,NS", "--seeds", "2", "--epochs", "2"]
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
)
#: The run page's tabs: the route under the run and the text the page shows once it is drawn.
TABS = {
    "report": ("artifacts/report/{table}.html", "{table}.html"),
    "overview": ("", "Child runs"),
    "metrics": ("model-metrics", "n_finished"),
}
#: data-component-id of the MLflow Assistant's close button (MLflow 3's design system).
ASSISTANT_CLOSE = "mlflow.assistant.chat_panel.close"


def svdablate(*args: str) -> list[str]:
    """The svdablate CLI of this interpreter."""
    return [sys.executable, "-m", "svdablate.cli", *args]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Any, what: str, timeout: float) -> Any:
    """Poll `check()` until it returns something truthy; RuntimeError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.25)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def ui_up(port: int) -> bool:
    """True once the MLflow server answers its health check."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


class DevTools:
    """Just enough of the Chrome DevTools protocol: send a command, await its result."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def __call__(self, method: str, **params: Any) -> dict[str, Any]:
        call = next(self.ids)
        await self.ws.send_str(json.dumps({"id": call, "method": method, "params": params}))
        async for message in self.ws:
            reply = json.loads(message.data)
            if reply.get("id") == call:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
        raise RuntimeError("Chromium closed the DevTools connection")

    async def evaluate(self, expression: str) -> Any:
        result = await self(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        return result.get("result", {}).get("value")

    async def until(self, expression: str, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not await self.evaluate(expression):
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
            await asyncio.sleep(0.25)


@contextlib.asynccontextmanager
async def browser_tab(chromium: str, size: tuple[int, int]) -> AsyncIterator[DevTools]:
    """A headless Chromium of a fresh profile (a first visit), its one tab at `size`."""
    with tempfile.TemporaryDirectory() as profile:
        browser = subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            wait_for(port_file.exists, "Chromium's DevTools port", 30)
            port = wait_for(lambda: port_file.read_text().split("\n")[0], "the port", 10)
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{port}/json/list") as reply:
                    targets = await reply.json()
                page = next(t for t in targets if t["type"] == "page")
                async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                    tab = DevTools(ws)
                    width, height = size
                    await tab(
                        "Emulation.setDeviceMetricsOverride",
                        width=width,
                        height=height,
                        deviceScaleFactor=1,
                        mobile=False,
                    )
                    yield tab
        finally:
            browser.terminate()
            browser.wait(timeout=30)


async def show(tab: DevTools, url: str, ready_text: str, timeout: float = 60) -> str:
    """Navigate to `url`, wait until the page shows `ready_text`; the page's text."""
    await tab("Page.navigate", url=url)
    seen = f"document.body && document.body.innerText.includes({ready_text!r})"
    await tab.until(seen, repr(ready_text), timeout)
    return str(await tab.evaluate("document.body.innerText"))


async def capture(
    chromium: str, url: str, ready_text: str, out: Path, size: tuple[int, int], settle: float
) -> None:
    """Open `url` in headless Chromium, wait for `ready_text`, close the Assistant, save PNG."""
    async with browser_tab(chromium, size) as tab:
        await show(tab, url, ready_text)
        close = f"document.querySelector('[data-component-id=\"{ASSISTANT_CLOSE}\"]')"
        await asyncio.sleep(1.0)  # the Assistant opens on a first visit
        await tab.evaluate(f"{close} && {close}.click()")
        await asyncio.sleep(settle)  # charts and the artifact's iframe draw
        shot = await tab("Page.captureScreenshot", format="png")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(base64.b64decode(shot["data"]))


def demo_study(folder: Path) -> None:
    """A small finished study in `folder` (about a minute on two CPU cores)."""
    subprocess.run(svdablate("run", *DEMO, "--results-dir", str(folder)), check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results-dir", type=Path, help="a finished study (default: run one)")
    parser.add_argument("--out", type=Path, default=Path("docs/mlflow-ui.png"))
    parser.add_argument("--tab", choices=TABS, default="report", help="the run page's tab")
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds to let it draw")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args()

    scratch = None
    results = args.results_dir
    if results is None:
        scratch = tempfile.TemporaryDirectory()
        results = Path(scratch.name)
        demo_study(results)
    uri = f"sqlite:///{(results / 'mlflow.db').resolve()}"
    parent = latest_parent(uri)
    info = parent_info(uri, parent)
    for warning in publish_study(uri, parent):
        print(warning, file=sys.stderr)

    port = free_port()
    ui = subprocess.Popen(
        svdablate("ui", "--results-dir", str(results), "--port", str(port)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its server's workers go with it
    )
    try:
        wait_for(lambda: ui_up(port), f"the MLflow UI on port {port}", 120)
        route, ready = TABS[args.tab]
        table = default_layout(str(info["preset"]))
        base = f"http://127.0.0.1:{port}"
        url = run_url(base, str(info["experiment_id"]), parent, route.format(table=table))
        size = (args.width, args.height)
        asyncio.run(
            capture(args.chromium, url, ready.format(table=table), args.out, size, args.settle)
        )
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)
        if scratch is not None:
            scratch.cleanup()
    print(f"{args.out}: parent run {parent} ({url.split('#')[1]})")


if __name__ == "__main__":
    main()
