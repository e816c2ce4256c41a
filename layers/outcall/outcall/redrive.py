"""Re-drive a dead-letter queue: `python -m outcall.redrive results` (or `imports`), or
`make redrive QUEUE=results`. The queue is --queue-url, else RESULTS_QUEUE_URL / IMPORT_QUEUE_URL,
else the queue of the deployed stack (STACK_NAME, or samconfig.toml's stack_name for ENV; region
from AWS_REGION / AWS_DEFAULT_REGION, else samconfig.toml's), read from CloudFormation. Its DLQ
comes from the queue's RedrivePolicy; every message (or --max) is moved back. Re-processing is
safe: the consumers are idempotent. A setting that is missing or wrong is one line on stderr and
exit code 2."""

from __future__ import annotations

import argparse
import os

from outcall import commands, queues

PROG = "python -m outcall.redrive"

# queue argument -> (environment variable, logical id in template.yaml)
QUEUES = {
    "results": ("RESULTS_QUEUE_URL", "ResultsQueue"),
    "imports": ("IMPORT_QUEUE_URL", "ImportQueue"),
}


def queue_url(queue: str, explicit: str | None = None) -> str:
    """The URL of the `results` or `imports` queue: given, from the environment, or from the stack."""
    variable, logical_id = QUEUES[queue]
    url = explicit or os.environ.get(variable)
    if url:
        commands.use_region()
        return url
    try:
        return commands.stack_resource(logical_id)
    except commands.CommandError as exc:
        raise commands.CommandError(f"no {queue} queue URL: set {variable} or --queue-url, or: {exc}") from exc


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("queue", choices=sorted(QUEUES), help="which queue to re-drive into")
    parser.add_argument("--queue-url", help="the queue URL (default: from the environment, else from the stack)")
    parser.add_argument("--max", type=int, default=None, help="move at most this many messages")
    args = parser.parse_args(argv)
    if args.max is not None and args.max < 1:
        parser.error("--max must be at least 1")
    url = queue_url(args.queue, args.queue_url)
    try:
        dlq_url = queues.dead_letter_queue_url(url)
    except ValueError as exc:
        raise commands.CommandError(str(exc)) from exc
    moved = queues.redrive(dlq_url, url, max_messages=args.max)
    print(f"moved {moved} message(s) from {dlq_url} to {url}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command line: its exit code (2, with one line on stderr, for a setting to fix)."""
    return commands.run(PROG, _main, argv)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
