"""Function invocations in worker processes, as Lambda runs each concurrent invocation in a sandbox
of its own: the SQS pumps' batches (chunks of an import, dispatch waves, results) run here, so their
work is not held to the one interpreter that also serves the gateway and the pumps.

`python -m local` starts OUTCALL_LOCAL_PROCESSES workers (2 by default; 0 runs every invocation in
its own process, as before) the first time a batch comes. Each is `python -m local.workers` with the
stack's environment and import path, taking invocations over a socket pair (pickled, as
multiprocessing.connection frames them) and working up to THREADS of them at once; an invocation
goes to the worker with the fewest in hand. The answer, or the error as `Type: message` (the
traceback goes to the stack's log), comes back the same way. A worker that dies fails what it had
in hand (the pumps retry it, as SQS would) and is started again for the next invocation.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

THREADS = 8  # invocations a worker works at once (the pumps' batches of every queue share the workers)


@dataclass(frozen=True)
class Invocation:
    """What a worker needs to import and call a function (local.template.Function, picklable)."""

    name: str
    arn: str
    code_uri: str
    handler: str
    memory: int
    timeout: int


class InvocationFailed(RuntimeError):
    """The function raised in its worker (or the worker died): `Type: message`."""


class _Worker:
    def __init__(self, index: int) -> None:
        parent, child = socket.socketpair()
        self.process = subprocess.Popen(  # noqa: S603 - this interpreter, our module, numbers
            [sys.executable, "-m", "local.workers", "--fd", str(child.fileno()), "--index", str(index)],
            pass_fds=[child.fileno()],
            env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
        )
        child.close()
        self.sock = parent  # kept to shut down: closing alone sends nothing while _read is blocked on it
        self.conn = Connection(os.dup(parent.fileno()))
        self.pending: dict[int, Future[Any]] = {}
        self.gone = threading.Event()  # its socket ended: dead or dying, even before the exit is seen
        self._lock = threading.Lock()
        threading.Thread(target=self._read, name=f"worker-{index}-answers", daemon=True).start()

    def alive(self) -> bool:
        return not self.gone.is_set() and self.process.poll() is None

    def submit(self, number: int, call: Invocation, event: Any) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            self.pending[number] = future
            try:
                self.conn.send((number, call, event))
            except OSError as exc:
                self.pending.pop(number, None)
                self.gone.set()
                raise InvocationFailed(f"the worker is gone: {exc}") from exc
        return future

    def _read(self) -> None:
        while True:
            try:
                number, ok, value = self.conn.recv()
            except (EOFError, OSError):
                break
            with self._lock:
                future = self.pending.pop(number, None)
            if future is None:
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(InvocationFailed(value))
        with self._lock:  # the worker died or was stopped: what it had in hand failed
            self.gone.set()
            lost, self.pending = list(self.pending.values()), {}
        for future in lost:
            future.set_exception(InvocationFailed(f"the worker process ended (exit {self.process.poll()})"))

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # the worker reads EOF and ends; so does _read
        self.sock.close()
        self.conn.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class WorkerPool:
    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._workers: list[_Worker | None] = [None] * processes
        self._numbers = itertools.count()
        self._lock = threading.Lock()

    def _pick(self) -> _Worker:
        with self._lock:
            for i, worker in enumerate(self._workers):
                if worker is None or not worker.alive():
                    self._workers[i] = _Worker(i)
            workers = [w for w in self._workers if w is not None]
            return min(workers, key=lambda w: len(w.pending))

    def invoke(self, call: Invocation, event: Any) -> Any:
        """Call the function in a worker; its answer, or InvocationFailed."""
        return self._pick().submit(next(self._numbers), call, event).result()

    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w is not None and w.alive()]

    def stop(self) -> None:
        with self._lock:
            workers, self._workers = self._workers, [None] * self.processes
        for worker in workers:
            if worker is not None:
                worker.stop()


# ---------------------------------------------------------------- the worker process


def _serve(conn: Connection) -> None:
    from local.runtime import LambdaContext, import_handler

    handlers: dict[tuple[str, str], Any] = {}
    imports = threading.Lock()
    sending = threading.Lock()

    def handler(call: Invocation) -> Any:
        with imports:
            key = (call.code_uri, call.handler)
            if key not in handlers:
                handlers[key] = import_handler(call.code_uri, call.handler)
            return handlers[key]

    def run(number: int, call: Invocation, event: Any) -> None:
        try:
            answer: tuple[int, bool, Any] = (
                number,
                True,
                handler(call)(event, LambdaContext(call.name, call.arn, call.memory, call.timeout)),
            )
        except Exception as exc:
            traceback.print_exc()
            answer = (number, False, f"{type(exc).__name__}: {exc}")
        with sending:
            try:
                conn.send(answer)
            except (OSError, ValueError):  # the stack is gone
                pass
            except Exception as exc:  # an answer that does not pickle
                conn.send((number, False, f"the answer could not be sent back: {type(exc).__name__}: {exc}"))

    pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="invocation")
    while True:
        try:
            number, call, event = conn.recv()
        except (EOFError, OSError):
            return  # the stack closed its end (or is gone): the process ends, as a sandbox is shut down
        pool.submit(run, number, call, event)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="a worker process of the local stack's functions")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--index", type=int, default=0)
    args = parser.parse_args(argv)
    # the stack blocks its stop signals in every thread and its children inherit the mask: a worker
    # ends when the stack closes its socket, and Ctrl-C (sent to the whole group) is the stack's
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _serve(Connection(args.fd))
    os._exit(0)  # threads still in an invocation end with the process, as the stack's own do


if __name__ == "__main__":
    main()
