"""Polling real processes and stores: the `wait_for` fixture, importable where a fixture is not
(module-scoped helpers of the e2e tests)."""

import time
from collections.abc import Callable


def poll(predicate: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    """Poll `predicate` until it holds (True) or `timeout` seconds pass (False)."""
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(interval)
    return False
