"""Frequency caps per number, across every task and provider: pure rules, no store.

A cap is `attempts` per rolling `windowHours` (e.g. 3 per 24 h, 10 per 720 h). The account's caps come from
the environment (`COMPLIANCE_CAPS`, e.g. `3/24h,10/30d`; default DEFAULT_CAPS) and hold for every task
that has `settings.compliance`; a task may add stricter ones (`settings.compliance.caps`), never looser
ones (`check_caps`: 422 naming the field).

Every release of a number (whatever task, provider or outcome: failed and unanswered calls count) is one
entry of its attempt log (store/caps.py), spent when the dispatcher releases it and given back only when
the release did not happen (the provider refused the batch, a pause withdrew it before it was dialled).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from outcall.errors import Unprocessable
from outcall.models import MAX_CAP_WINDOW_HOURS, CapRule

DEFAULT_CAPS: Final = "3/24h,10/30d"
MAX_WINDOW_HOURS: Final = MAX_CAP_WINDOW_HOURS  # the log keeps 31 days
MAX_LOG_ENTRIES: Final = 200  # a number's log keeps its latest releases only (uncapped tasks release at will)
_RULE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*([hd])\s*$")


def parse_caps(text: str) -> list[CapRule]:
    """`3/24h,10/30d` -> rules; an empty text is no caps."""
    rules = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = _RULE.match(part)
        if not match:
            raise ValueError(f"cap {part!r} is not <attempts>/<hours>h or <attempts>/<days>d")
        attempts, size, unit = int(match[1]), int(match[2]), match[3]
        rules.append(CapRule(attempts=attempts, window_hours=size * (24 if unit == "d" else 1)))
    return rules


def account_caps(env: Mapping[str, str] | None = None) -> list[CapRule]:
    return parse_caps((env if env is not None else os.environ).get("COMPLIANCE_CAPS", DEFAULT_CAPS))


def check_caps(
    task_caps: Sequence[CapRule], account: Sequence[CapRule], field: str = "settings.compliance.caps"
) -> None:
    """A task's cap may only be stricter than the account's: one that allows more attempts in a window
    at least as long as an account cap's is a widening (422)."""
    for i, rule in enumerate(task_caps):
        for acc in account:
            if rule.window_hours <= acc.window_hours and rule.attempts > acc.attempts:
                name = f"{field}[{i}].attempts"
                message = (
                    f"{rule.label()} allows more than the account's {acc.label()}: a task may only narrow the caps"
                )
                raise Unprocessable(f"{name}: {message}", details=[{"field": name, "message": message}])


def effective_caps(account: Iterable[CapRule], task: Iterable[CapRule]) -> list[CapRule]:
    return [*account, *task]


@dataclass(frozen=True)
class CapVerdict:
    allowed: bool
    counts: dict[str, int]  # attempts in each window before this one, by rule label
    frees_at: datetime | None  # not allowed: when every cap has room again


def judge(log: Mapping[str, float], rules: Sequence[CapRule], now: datetime) -> CapVerdict:
    """Whether one more attempt fits every rule, given the number's attempt log (release key -> epoch
    seconds). A full rule frees once its oldest attempts inside the window age out of it."""
    stamp = now.timestamp()
    times = sorted(log.values())
    counts: dict[str, int] = {}
    frees = 0.0
    for rule in rules:
        since = stamp - rule.window.total_seconds()
        inside = [t for t in times if t > since]
        counts[rule.label()] = len(inside)
        if len(inside) >= rule.attempts:
            # room once len(inside) - attempts + 1 of them are out of the window
            oldest_needed = inside[len(inside) - rule.attempts]
            frees = max(frees, oldest_needed + rule.window.total_seconds())
    if frees:
        return CapVerdict(False, counts, datetime.fromtimestamp(frees, UTC) + timedelta(seconds=1))
    return CapVerdict(True, counts, None)


def prune(log: Mapping[str, float], now: datetime) -> dict[str, float]:
    """The entries a cap may still look at (31 days, the latest MAX_LOG_ENTRIES); older ones are dropped."""
    since = now.timestamp() - MAX_WINDOW_HOURS * 3600
    kept = sorted(((v, k) for k, v in log.items() if v > since), reverse=True)[:MAX_LOG_ENTRIES]
    return {k: v for v, k in kept}
