"""`svdablate ui RUN_ID --open` opens that study's page, in the model-training view, once the
MLflow UI answers. Python's `webbrowser` runs the program named by BROWSER: here a recorder that
fetches the URL it is given (so a browser told too early finds no server) and writes down what
it was told and what answered."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from mlflow import MlflowClient

from svdablate.schema import Role, Tag

pytestmark = pytest.mark.deploy  # MLflow's UI server starts 11 processes: ~35 s of CPU

RECORDER = """\
    #!{python}
    import sys, urllib.request
    url = sys.argv[1]
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            answer = f"{{response.status}} {{len(response.read())}}"
    except OSError as err:
        answer = f"refused {{err}}"
    with open({record!r}, "a") as out:
        out.write(f"{{url}}\\n{{answer}}\\n")
"""


def studies(uri: str) -> tuple[str, str]:
    """Two parent runs of studies (the newer one last): their experiment and the older's id."""
    client = MlflowClient(uri)
    experiment = client.create_experiment("demo")
    older, _ = (
        client.create_run(experiment, start, {Tag.ROLE: Role.PARENT}).info.run_id
        for start in (1_000_000, 2_000_000)
    )
    return experiment, older


def test_ui_open_shows_the_named_study_once_the_ui_answers(tmp_path, cli, port, wait_for):
    results = tmp_path / "results"
    results.mkdir()
    experiment, older = studies(f"sqlite:///{results / 'mlflow.db'}")
    record = tmp_path / "opened.txt"
    browser = tmp_path / "browser"
    browser.write_text(textwrap.dedent(RECORDER.format(python=sys.executable, record=str(record))))
    browser.chmod(0o755)
    ui = cli.start(
        "ui", older, "--results-dir", str(results), "--port", str(port), "--open",
        env={"BROWSER": f"{browser} %s"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert wait_for(record.exists, 180), "the browser was not told"
        url, answer = record.read_text().splitlines()
        expected = (
            f"http://127.0.0.1:{port}/#/experiments/{experiment}/runs/{older}"
            "?workflowType=machine_learning"
        )
        assert url == expected, url
        status, size = answer.split(" ", 1)
        assert status == "200" and int(size) > 0, answer  # the UI was up when the browser came
        ui.send_signal(signal.SIGTERM)  # `svdablate ui` alone: it stops the server it started
        output = ui.communicate(timeout=180)[0]
    finally:
        if ui.poll() is None:
            os.killpg(ui.pid, signal.SIGKILL)
            ui.wait(30)
    assert f"study: {expected}" in output, output[-2000:]
    assert "no web browser found" not in output, output[-2000:]
    assert wait_for(lambda: subprocess.run(["pgrep", "-s", str(ui.pid)]).returncode == 1, 30), (
        "the MLflow UI outlived `svdablate ui`"
    )
