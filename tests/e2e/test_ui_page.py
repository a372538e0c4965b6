"""`svdablate ui` prints the study's page, and a fresh browser there finds the study: the parent
run in MLflow's model-training view (its child runs) and the report under its Artifacts."""

import asyncio
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from polling import poll as wait_for
from ray_nodes import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.deploy]
SCRIPT = Path(__file__).parents[2] / "scripts" / "mlflow_ui_screenshot.py"


def browser_script():
    spec = importlib.util.spec_from_file_location("mlflow_ui_screenshot", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def page_texts(chromium: str, url: str, parent: str) -> tuple[str, str, str]:
    """The study's page once it shows its child runs, its report under Artifacts, and the
    experiment's runs table (the page's own link up) once it lists the study."""
    browser = browser_script()
    async with browser.browser_tab(chromium, (1600, 1000)) as tab:
        overview = await browser.show(tab, url, "Child runs", 90)
        report_url = url.replace("?", "/artifacts/report/summary.html?")
        artifacts = await browser.show(tab, report_url, "summary.html", 90)
        runs = await browser.show(tab, url.replace(f"/{parent}", ""), "demo · ", 90)
    return overview, artifacts, runs


def test_ui_prints_the_study_page_a_fresh_browser_opens_on(tmp_path, monkeypatch):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("no Chromium: apt-get install -y chromium (.ci/run installs it)")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    results = tmp_path / "results"
    cli = [sys.executable, "-m", "svdablate.cli"]
    study = subprocess.run(
        [*cli, "run", "--rows", "SVD", "--seeds", "1", "--epochs", "1", "--no-report",
         "--results-dir", str(results)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert study.returncode == 0, study.stderr[-2000:]
    parent = study.stdout.split("parent run ", 1)[1].split(",", 1)[0]
    port = free_port()
    ui = subprocess.Popen(
        [*cli, "ui", "--results-dir", str(results), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        lines = [ui.stdout.readline(), ui.stdout.readline()]
        assert lines[1].startswith("study: http://127.0.0.1:"), lines
        url = lines[1].split(" ", 1)[1].strip()
        assert f"/runs/{parent}?workflowType=machine_learning" in url, url
        assert wait_for(lambda: browser_script().ui_up(port), 120), "the MLflow UI did not start"
        overview, artifacts, runs = asyncio.run(page_texts(chromium, url, parent))
    finally:
        os.killpg(ui.pid, signal.SIGTERM)  # the server's workers go with it
        ui.wait(30)
    assert "Model training" in overview and "svdablate.role" in overview, overview[:2000]
    assert "summary.html" in artifacts and "kappa.png" in artifacts, artifacts[:2000]
    assert "Traces" not in runs.split("demo · ")[1][:200], runs[:2000]  # not GenAI's page
