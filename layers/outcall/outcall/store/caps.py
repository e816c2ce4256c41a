"""Attempt logs of numbers, for the frequency caps (outcall.caps): the only DynamoDB code for them.

`CAP#<e164>` / `ATTEMPTS` holds `log` (release key -> epoch seconds of the release), `version` and the TTL
`expiresAt` (31 days after the latest release). One item per number for every task and provider, so two
dispatchers of different provider accounts (different leases) releasing one number at once are ordered
by DynamoDB: a spend reads the item (consistent), judges the caps, and writes the new log on the
condition that `version` is still the one read; a writer that lost re-reads and judges again. A spend
for a release key already in the log (the same attempt sent again) changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Final

from botocore.exceptions import ClientError

from outcall.caps import MAX_WINDOW_HOURS, CapRule, CapVerdict, judge, prune
from outcall.store.base import StoreBase, _is_conditional_failure, _parallel

SPEND_TRIES: Final = 8


def cap_key(e164: str) -> dict[str, str]:
    return {"pk": f"CAP#{e164}", "sk": "ATTEMPTS"}


class CapItems(StoreBase):
    def attempt_logs(self, numbers: Sequence[str]) -> dict[str, dict[str, float]]:
        """The attempt logs of some numbers (consistent reads, 100 per request)."""
        return {n: log for n, (log, _) in self._logs(numbers).items()}

    def _logs(self, numbers: Sequence[str]) -> dict[str, tuple[dict[str, float], int]]:
        found: dict[str, tuple[dict[str, float], int]] = {}
        for item in self._batch_get([cap_key(n) for n in numbers]):
            log = {str(k): float(v) for k, v in (item.get("log") or {}).items()}
            found[str(item["pk"]).removeprefix("CAP#")] = (log, int(item.get("version", 0)))
        return found

    def spend_attempts(
        self, entries: Sequence[tuple[str, str]], rules: Sequence[CapRule], now: datetime
    ) -> list[CapVerdict]:
        """spend_attempt for each (e164, release key), reading the logs in batches first; in order."""
        logs = self._logs([e for e, _ in entries])

        def spend(entry: tuple[str, str]) -> CapVerdict:
            return self.spend_attempt(entry[0], entry[1], rules, now, seen=logs.get(entry[0], ({}, 0)))

        return _parallel(spend, entries)

    def spend_attempt(
        self,
        e164: str,
        release_key: str,
        rules: Sequence[CapRule],
        now: datetime,
        *,
        seen: tuple[dict[str, float], int] | None = None,
    ) -> CapVerdict:
        """Count one release of `e164` unless a rule is full (then nothing is written). `seen` is the
        log and version already read (a batch read); without it, or once a write lost, it is read."""
        for _ in range(SPEND_TRIES):
            if seen is None:
                item = self._get(**cap_key(e164), consistent=True) or {}
                seen = ({str(k): float(v) for k, v in (item.get("log") or {}).items()}, int(item.get("version", 0)))
            log, version = seen
            seen = None
            if release_key in log:  # this very attempt, sent again
                verdict = judge({k: v for k, v in log.items() if k != release_key}, rules, now)
                return CapVerdict(True, verdict.counts, None)
            verdict = judge(log, rules, now)
            if not verdict.allowed:
                return verdict
            new_log = prune(log, now) | {release_key: now.timestamp()}
            try:
                self.table.update_item(
                    Key=cap_key(e164),
                    UpdateExpression="SET #log = :log, #v = :next, expiresAt = :ttl",
                    ConditionExpression="attribute_not_exists(#v) OR #v = :seen",
                    ExpressionAttributeNames={"#log": "log", "#v": "version"},
                    ExpressionAttributeValues={
                        ":log": {k: Decimal(str(round(v, 3))) for k, v in new_log.items()},
                        ":next": version + 1,
                        ":seen": version,
                        ":ttl": int(now.timestamp()) + MAX_WINDOW_HOURS * 3600,
                    },
                )
            except ClientError as exc:
                if _is_conditional_failure(exc):
                    continue  # another dispatcher spent first: judge again on what it wrote
                raise
            return verdict
        raise RuntimeError(f"attempt log of a number kept changing under {SPEND_TRIES} tries")

    def give_back_attempt(self, e164: str, release_key: str) -> None:
        """A release that did not happen: its entry leaves the log (the version moves, so a spender that
        read the log before cannot write the entry back)."""
        try:
            self.table.update_item(
                Key=cap_key(e164),
                UpdateExpression="REMOVE #log.#k ADD #v :one",
                ConditionExpression="attribute_exists(#log.#k)",
                ExpressionAttributeNames={"#log": "log", "#k": release_key, "#v": "version"},
                ExpressionAttributeValues={":one": 1},
            )
        except ClientError as exc:
            if not _is_conditional_failure(exc):
                raise
