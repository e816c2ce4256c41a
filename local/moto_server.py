"""The local stack's AWS endpoint: moto in server mode, in a process of its own.

    python -m local.moto_server --port 4566 [--host 127.0.0.1]

The local stack (local.stack) starts this as its child: moto's request handling then runs on
its own interpreter and core, not under the GIL of the gateway, pumps and functions. moto is
patched here as the local stack needs it: conditional writes and SQS deletes atomic
(local.moto_atomic), its memory bounded over a long run (local.moto_bounded), and without the
work it repeats on every request (local.moto_speed).

SIGTERM or SIGINT stop the server and the process exits 0; it also stops when its parent
dies (Linux: PR_SET_PDEATHSIG), so a killed stack leaves no moto behind. It prints one line,
"moto ready on <url>", once it accepts requests.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
READY = "moto ready on"


def die_with_parent() -> None:
    """Ask Linux to send SIGTERM to this process when its parent exits (no orphaned moto)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() == 1:  # the parent was already gone before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="moto server for the outcall local stack")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)

    # the stop signals are taken with sigwait below, never by a handler; blocked before any thread
    # starts so that every thread inherits the mask (a parent's mask is inherited as well)
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    die_with_parent()

    from local.moto_atomic import make_dynamodb_writes_atomic, make_sqs_deletes_atomic
    from local.moto_bounded import bound_moto_memory
    from local.moto_s3 import keep_put_bodies
    from local.moto_speed import make_server, speed_up_moto_server

    bound_moto_memory()
    speed_up_moto_server()
    make_dynamodb_writes_atomic()
    make_sqs_deletes_atomic()
    keep_put_bodies()  # a PUT's body is the object whatever its Content-Type, as in S3
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    server = make_server(args.host, args.port)
    serving = threading.Thread(target=server.serve_forever, name="moto", daemon=True)
    serving.start()
    print(f"{READY} http://{args.host}:{args.port}", flush=True)
    signal.sigwait(STOP_SIGNALS)
    server.shutdown()
    serving.join(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
