"""`make run` stops cleanly: SIGTERM or SIGINT, once or twice in a row (make sends its signal
twice), idle or in the middle of an import, and nothing of the stack is left running."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import start_stack

pytestmark = pytest.mark.slow


def children(pid: int) -> list[int]:
    """Every descendant of pid (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        kids = [p for p, parent in parents.items() if parent == current]
        found += kids
        frontier += kids
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def signal_twice_and_wait(proc: subprocess.Popen[bytes], signum: int) -> float:
    started = time.monotonic()
    os.kill(proc.pid, signum)
    time.sleep(0.05)
    os.kill(proc.pid, signum)
    proc.wait(timeout=20)
    return time.monotonic() - started


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_stack_stops_at_once_on_a_signal_sent_twice(tmp_path: Path, signum: int) -> None:
    proc, stack = start_stack(tmp_path / "stack.log")
    kids = children(proc.pid)
    assert any("local.moto_server" in cmdline(k) for k in kids), [cmdline(k) for k in kids]
    seconds = signal_twice_and_wait(proc, signum)
    assert proc.returncode == 0, stack.log.read_text()[-3000:]
    assert seconds < 15
    deadline = time.monotonic() + 5
    while any(alive(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [cmdline(k) for k in kids if alive(k)] == []
    log = stack.log.read_text()
    assert "stopped" in log and "Traceback" not in log


def test_the_stack_stops_in_the_middle_of_an_import(tmp_path: Path) -> None:
    proc, stack = start_stack(tmp_path / "stack.log")
    kids = children(proc.pid)
    created = stack.authed("POST", "/tasks", json={"name": "signal", "provider": "xswitch", "type": "auto"})
    assert created.status_code == 201, created.text
    rows = "\n".join(f"c{n},+86138{n:08d}" for n in range(30_000))
    answer = stack.authed("POST", f"/tasks/{created.json()['taskId']}/uploads", json={"filename": "big.csv"})
    assert answer.status_code == 201, answer.text
    import requests

    put = requests.put(answer.json()["uploadUrl"], data=("name,mobile\n" + rows).encode(), timeout=60)
    assert put.status_code == 200
    import_id = answer.json()["importId"]
    stack.wait_for(lambda: stack.authed("GET", f"/imports/{import_id}").json().get("chunks"), timeout=60)
    seconds = signal_twice_and_wait(proc, signal.SIGTERM)  # chunks are being worked now
    assert proc.returncode == 0, stack.log.read_text()[-3000:]
    assert seconds < 15
    deadline = time.monotonic() + 5
    while any(alive(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [cmdline(k) for k in kids if alive(k)] == []


def test_moto_does_not_outlive_a_killed_stack(tmp_path: Path) -> None:
    proc, _ = start_stack(tmp_path / "stack.log")
    moto = [k for k in children(proc.pid) if "local.moto_server" in cmdline(k)]
    assert len(moto) == 1
    proc.kill()  # no chance to stop anything: the child must notice by itself
    proc.wait()
    deadline = time.monotonic() + 10
    while alive(moto[0]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(moto[0])
