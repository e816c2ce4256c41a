"""`make run`: serve the whole system on 127.0.0.1 until interrupted."""

from __future__ import annotations

import signal
import threading

from local.stack import LocalStack


def main() -> None:
    stack = LocalStack().start()
    print(stack.banner(), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    stack.stop()


if __name__ == "__main__":
    main()
