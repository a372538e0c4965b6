"""Every test starts from an environment that names no store, experiment or cluster.

A developer's exported MLFLOW_TRACKING_URI or RAY_ADDRESS must never receive a test's runs, and
one test must not leak them into the next (``mlflow.set_tracking_uri`` exports the variable).
Tests that want one set it with ``monkeypatch.setenv`` or pass it to the subprocess they start.
"""

import pytest

ISOLATED_ENV = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_EXPERIMENT_NAME",
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_RUN_ID",
    "RAY_ADDRESS",
)


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ISOLATED_ENV:
        monkeypatch.delenv(name, raising=False)
