"""local.workers: the SQS pumps' batches run in worker processes, as Lambda runs each concurrent
invocation in a sandbox of its own. A handler here is a module written to a temporary CodeUri."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from local.runtime import Runtime
from local.template import Function
from local.workers import Invocation, InvocationFailed, WorkerPool

HANDLER = """
import os, pathlib, time

RUNNING = MOST = 0

def handler(event, context):
    kind = event["kind"]
    if kind == "echo":
        return {"pid": os.getpid(), "event": event, "function": context.function_name,
                "remaining": context.get_remaining_time_in_millis()}
    if kind == "raise":
        raise ValueError("the row is bad")
    if kind == "die":
        os._exit(3)
    if kind == "meet":  # returns only once the other invocation has come as well
        here, other = pathlib.Path(event["here"]), pathlib.Path(event["other"])
        here.touch()
        for _ in range(200):
            if other.exists():
                return {"met": True}
            time.sleep(0.05)
        return {"met": False}
    if kind == "overlap":  # how many invocations of this function were in it at once
        global RUNNING, MOST
        RUNNING += 1
        MOST = max(MOST, RUNNING)
        time.sleep(0.2)
        RUNNING -= 1
        return {"most": MOST}
    if kind == "unpicklable":
        return {"lock": __import__("threading").Lock()}
"""


@pytest.fixture
def call(tmp_path: Path) -> Invocation:
    code = tmp_path / "fn"
    code.mkdir()
    (code / "worker_probe.py").write_text(textwrap.dedent(HANDLER))
    return Invocation(
        "probe", "arn:aws:lambda:us-east-1:123456789012:function:probe", str(code), "worker_probe.handler", 128, 30
    )


def _function(call: Invocation) -> Function:
    """The template's view of the probe, for a Runtime."""
    return Function(
        logical_id="Probe",
        name=call.name,
        arn=call.arn,
        code_uri=Path(call.code_uri),
        handler=call.handler,
        memory=call.memory,
        timeout=call.timeout,
        environment={},
    )


@pytest.fixture
def pool() -> Any:
    workers = WorkerPool(2)
    yield workers
    workers.stop()


def test_an_invocation_runs_in_another_process_and_its_answer_comes_back(pool: WorkerPool, call: Invocation) -> None:
    answer = pool.invoke(call, {"kind": "echo", "n": [1, {"a": "b"}]})
    assert answer["pid"] != os.getpid() and answer["pid"] in pool.pids()
    assert answer["event"] == {"kind": "echo", "n": [1, {"a": "b"}]}
    assert answer["function"] == "probe" and 0 < answer["remaining"] <= 30_000


def test_an_error_comes_back_as_its_type_and_message(pool: WorkerPool, call: Invocation) -> None:
    with pytest.raises(InvocationFailed, match=r"^ValueError: the row is bad$"):
        pool.invoke(call, {"kind": "raise"})
    with pytest.raises(InvocationFailed, match="could not be sent back"):
        pool.invoke(call, {"kind": "unpicklable"})
    assert pool.invoke(call, {"kind": "echo"})["event"] == {"kind": "echo"}  # the worker carries on


def test_invocations_run_side_by_side(pool: WorkerPool, call: Invocation, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    with ThreadPoolExecutor(2) as threads:
        first = threads.submit(pool.invoke, call, {"kind": "meet", "here": a, "other": b})
        second = threads.submit(pool.invoke, call, {"kind": "meet", "here": b, "other": a})
        assert first.result() == second.result() == {"met": True}


def test_a_worker_that_dies_fails_its_invocation_and_is_started_again(pool: WorkerPool, call: Invocation) -> None:
    pool.invoke(call, {"kind": "echo"})
    before = set(pool.pids())
    with pytest.raises(InvocationFailed, match="worker process ended"):
        pool.invoke(call, {"kind": "die"})
    answers = [pool.invoke(call, {"kind": "echo"}) for _ in range(4)]
    assert len(pool.pids()) == 2 and set(pool.pids()) != before
    assert all(a["pid"] in pool.pids() for a in answers)


def test_stopped_workers_end_at_once(call: Invocation) -> None:
    pool = WorkerPool(2)
    pool.invoke(call, {"kind": "echo"})
    pool.invoke(call, {"kind": "echo"})
    workers = [w for w in pool._workers if w is not None]
    assert len(workers) == 2
    pool.stop()
    # ended by the EOF of its socket, not killed after the wait (a kill leaves -9)
    assert [w.process.returncode for w in workers] == [0, 0] and pool.pids() == []


def test_the_runtime_sends_isolated_invocations_to_its_workers_and_keeps_the_rest(
    pool: WorkerPool, call: Invocation, tmp_path: Path
) -> None:
    fn = _function(call)
    runtime = Runtime({"Probe": fn}, workers=pool)
    isolated = runtime.invoke(fn, {"kind": "echo"}, "sqs", "q", isolated=True)
    here = runtime.invoke(fn, {"kind": "echo"}, "api", "GET /")
    assert isolated["pid"] in pool.pids() and here["pid"] == os.getpid()
    with pytest.raises(InvocationFailed):
        runtime.invoke(fn, {"kind": "raise"}, "sqs", "q", isolated=True)
    assert [(e["trigger"], e["outcome"]) for e in runtime.journal] == [("sqs", "ok"), ("api", "ok"), ("sqs", "error")]


def test_a_function_in_the_stacks_own_process_serves_one_invocation_at_a_time(
    pool: WorkerPool, call: Invocation
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    fn = _function(call)
    runtime = Runtime({"Probe": fn}, workers=pool)
    with ThreadPoolExecutor(3) as threads:  # as the gateway's threads do for three requests at once
        answers = list(threads.map(lambda _: runtime.invoke(fn, {"kind": "overlap"}, "http", "GET /"), range(3)))
    assert max(a["most"] for a in answers) == 1  # as one Lambda sandbox: never two requests in the module at once
