"""What the serving benches share: the tiny app as a user starts it, latency summaries, process memory."""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import AppServer  # noqa: E402,F401  (sets the offline tiny profile before models load)
from tests.endpoints import Endpoint, named_endpoints  # noqa: E402,F401


def p50_p95(seconds: list[float]) -> tuple[float, float]:
    if len(seconds) < 2:
        return (seconds[0], seconds[0]) if seconds else (float("nan"), float("nan"))
    return statistics.median(seconds), statistics.quantiles(seconds, n=20)[-1]


def rss_mib(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")
