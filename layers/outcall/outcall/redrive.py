"""Re-drive a dead-letter queue: `python -m outcall.redrive results` (or `imports`), or
`make redrive QUEUE=results`. Reads the queue URL from the environment the functions get
(RESULTS_QUEUE_URL / IMPORT_QUEUE_URL, or --queue-url), finds its DLQ from the RedrivePolicy and
moves every message (or --max) back. Re-processing is safe: the result processor is idempotent."""

from __future__ import annotations

import argparse
import sys

from outcall import queues
from outcall.config import Config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m outcall.redrive", description=__doc__)
    parser.add_argument("queue", choices=["results", "imports"], help="which queue to re-drive into")
    parser.add_argument("--queue-url", help="the queue URL (default: from the environment)")
    parser.add_argument("--max", type=int, default=None, help="move at most this many messages")
    args = parser.parse_args(argv)
    config = Config.from_env()
    queue_url = args.queue_url or (config.results_queue_url if args.queue == "results" else config.import_queue_url)
    if not queue_url:
        print(f"no queue URL for {args.queue}: set {args.queue.upper()}_QUEUE_URL or --queue-url", file=sys.stderr)
        return 2
    dlq_url = queues.dead_letter_queue_url(queue_url)
    moved = queues.redrive(dlq_url, queue_url, max_messages=args.max)
    print(f"moved {moved} message(s) from {dlq_url} to {queue_url}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
