"""The local stack (`python -m local`, what `make run` starts) as a subprocess on free ports, for the
benchmarks that go through the gateway (bench.imports, bench.json_contacts)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from bench import ENVIRONMENT
from local.spawn import spawn, stop

ROOT = Path(__file__).resolve().parent.parent
LAYER = ROOT / "layers" / "outcall"
DEV_TOKEN = "oc_bench_token_0123456789abcdef"


def child_env() -> dict[str, str]:
    env = {**os.environ, **ENVIRONMENT}
    env.pop("AWS_ENDPOINT_URL", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(LAYER), str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def start_local_stack(log: Path, extra: Mapping[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """`python -m local` on free ports with the bench's dev token; (process, gateway URL) once
    /health answers (given up after 120 s)."""
    env = {**child_env(), "OUTCALL_DEV_TOKEN": DEV_TOKEN, "OUTCALL_SQS_RETRY_DELAY": "1", **(extra or {})}
    for name in ENVIRONMENT:  # the stack sets its own AWS and Powertools environment
        env.pop(name, None)
    proc, url, _ = spawn(log, env, timeout=120)
    return proc, url


def stop_local_stack(proc: subprocess.Popen[bytes]) -> None:
    stop(proc, timeout=15)
