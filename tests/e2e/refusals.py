"""What the fault scenarios assert of a command that refuses: one error line, exit code 2,
within seconds."""

import subprocess
import time

# "Within seconds", not the minutes of retries they took: a fault found before any trial runs
# (`run` checks the grid and its data first: 5-10 s alone, up to 30 s on a machine shared by six)
QUICK_S = 60


def timed(result_of, *args: str, **kwargs) -> subprocess.CompletedProcess:
    """`result_of(*args, **kwargs)` (the `cli` fixture, `subprocess.run`) with its `seconds`."""
    began = time.monotonic()
    result = result_of(*args, **kwargs)
    result.seconds = time.monotonic() - began
    return result


def refused(result, *words: str) -> str:
    """The one error line of a command that stopped with exit code 2 within seconds."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    for word in words:
        assert word in lines[0], lines[0]
    assert result.seconds < QUICK_S, f"{result.seconds:.1f} s: {lines[0]}"
    return lines[0]
