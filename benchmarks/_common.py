"""Helpers shared by the benchmark scripts: child-process measurement and result files."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
DATA = Path(__file__).parent / "data"


# VmHWM, unlike ru_maxrss, starts afresh at exec, so a child never inherits its parent's peak.
_POSTLUDE = """
import json as _json, re as _re, resource as _resource
_hwm = _re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)
_use = _resource.getrusage(_resource.RUSAGE_SELF)
print(_json.dumps({"peak_rss_mib": int(_hwm) / 1024, "cpu_seconds": _use.ru_utime + _use.ru_stime,
                   **globals().get("RESULT", {})}))
"""


def measure(code: str, *args: str) -> dict[str, float]:
    """Run `code` in a fresh Python process; return its wall seconds, CPU seconds and own peak RSS.

    The code may leave a dict in a global named RESULT; its keys are merged into the result.
    """
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code + _POSTLUDE, *args], capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{proc.stderr}")
    out: dict[str, float] = {"seconds": seconds}
    out.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    return out


def write_results(name: str, payload: dict[str, Any]) -> Path:
    """Write `payload` with machine facts to benchmarks/results/<name>.json."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": __import__("os").cpu_count(),
        **payload,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
