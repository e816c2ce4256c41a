"""`make run`: serve the whole system on 127.0.0.1 until SIGTERM or SIGINT.

The stop signals are never handled by a Python signal handler: they are blocked in every
thread (the mask is set before any thread or child starts, and inherited) and the main thread
takes them with sigwait. A second signal while the stack stops (make sends SIGTERM twice, a
terminal sends SIGINT to make and to this process) stays pending and changes nothing, so
stopping cannot deadlock or be cut short half-way. Once the servers and the moto child are
stopped the process exits at once, without waiting for a function still in the middle of a
delivery (as a Lambda's work ends when its environment is shut down).
"""

from __future__ import annotations

import os
import signal
import sys

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def main() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    from local.stack import LocalStack

    stack = LocalStack()
    try:
        stack.start()
    except BaseException:
        stack.stop()
        raise
    print(stack.banner(), flush=True)
    received = signal.sigwait(STOP_SIGNALS)
    print(f"[local] {signal.Signals(received).name}: stopping", flush=True)
    code = 0
    try:
        stack.stop()
    except Exception as exc:  # stopped as far as it would go; say so and exit non-zero
        print(f"[local] stop failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        code = 1
    print("[local] stopped", flush=True)
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
