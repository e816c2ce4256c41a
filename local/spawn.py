"""`python -m local` (what `make run` starts) as a child process on free ports, for the end-to-end tests
and the benchmarks that go through the gateway: started, waited for until healthy, stopped."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(log: Path, env: Mapping[str, str], timeout: float = 90) -> tuple[subprocess.Popen[bytes], str, str]:
    """Start the stack with `env` (OUTCALL_PORT / OUTCALL_AWS_PORT set here to free ports) writing to
    `log`; (process, gateway URL, AWS URL) once /health answers and the banner is printed (the gateway
    answers before the simulators' URLs are known). Stopped again if it does not come up in `timeout`."""
    port, aws_port = free_port(), free_port()
    env = {**env, "OUTCALL_PORT": str(port), "OUTCALL_AWS_PORT": str(aws_port)}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "local"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"local stack exited: {log.read_text()[-3000:]}")
            try:
                if requests.get(url + "/health", timeout=10).status_code == 200 and "dev token" in log.read_text():
                    return proc, url, f"http://127.0.0.1:{aws_port}"
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"local stack not healthy in {timeout:.0f} s: {log.read_text()[-3000:]}")
            time.sleep(0.3)
    except BaseException:
        stop(proc)
        raise


def stop(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
