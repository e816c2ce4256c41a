"""The compliance gate's figures (issue "Dialing compliance"): a simulation with a controlled clock over
48 hours of 10,000 contacts in 10 regions (US, CA, RU, AU, BR, CN, IN, GB, MX, FR; Russian and Australian
mobiles and US toll-free numbers span many zones), do-not-call entries added while it runs, and caps that
bind (3 per 24 h, 10 per 30 days; no-answer calls are retried every 30 minutes up to 6 times).

    PYTHONPATH=layers/outcall python -m bench.compliance [--contacts N]

The gate is the real one (outcall.compliance.Gate with outcall.windows and outcall.caps); its store is an
in-memory stand-in for the two calls it makes (store.dnc.listed_numbers, store.caps.spend_attempts, same
rules: caps.judge and caps.prune), so the figure is the policy check's own speed. Every release is then
checked by an independent oracle: the callee's local time in *each* of its zones (zoneinfo on the instant,
not the gate's UTC intervals) must be inside the region's hours for the whole margin, the number must not
be listed at that instant, and no rolling 24 h / 30 d window of a number's releases may pass its cap.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

RESULTS = Path(__file__).resolve().parent / "results" / "compliance.json"
START = datetime(2027, 3, 12, 0, 0, tzinfo=UTC)  # a Friday; the US springs forward on Sunday the 14th
HOURS = 48
TICK = timedelta(minutes=5)
RELEASES_PER_TICK = 400
CALL_MINUTES = 4
RETRY_MINUTES = 30
MAX_ATTEMPTS = 6
NO_ANSWER_RATE = 0.6

# (region, example national prefixes to vary) -- numbers are kept only when phonenumbers says valid
SEEDS: dict[str, list[str]] = {
    "US": ["+1212555", "+1213555", "+1312555", "+1808555", "+1800555"],  # NY, LA, Chicago, Hawaii, toll-free
    "CA": ["+1416555", "+1604555"],
    "RU": ["+7916", "+7495"],  # mobiles (all zones), Moscow
    "AU": ["+61412", "+61290"],  # mobiles (all zones), Sydney
    "BR": ["+551198", "+559298"],  # Sao Paulo, Manaus
    "CN": ["+86138", "+86139"],
    "IN": ["+9198", "+9197"],
    "GB": ["+447400", "+447700"],
    "MX": ["+5255", "+52664"],  # Mexico City, Tijuana
    "FR": ["+3361", "+3362"],
}


def numbers_for(n: int, rng: random.Random) -> list[str]:
    import phonenumbers

    per_region = n // len(SEEDS)
    out: list[str] = []
    for seeds in SEEDS.values():
        found: set[str] = set()
        while len(found) < per_region:
            prefix = rng.choice(seeds)
            length = rng.choice((12, 13, 14))  # "+" and 11 to 13 digits: invalid lengths are dropped below
            candidate = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix)))
            try:
                if phonenumbers.is_valid_number(phonenumbers.parse(candidate, None)):
                    found.add(candidate)
            except phonenumbers.NumberParseException:
                continue
        out.extend(sorted(found))
    return out


class MemoryStore:
    """The two store reads the gate makes, in memory, with the store's rules."""

    def __init__(self) -> None:
        self.dnc: dict[str, datetime] = {}
        self.logs: dict[str, dict[str, float]] = defaultdict(dict)

    def listed_numbers(self, numbers: Sequence[str], task_id: str | None, now: datetime) -> dict[str, dict[str, Any]]:
        return {n: {"scope": "account", "source": "api"} for n in numbers if n in self.dnc and self.dnc[n] <= now}

    def spend_attempts(self, entries: Sequence[tuple[str, str]], rules: Sequence[Any], now: datetime) -> list[Any]:
        return [self.spend_attempt(e164, key, rules, now) for e164, key in entries]

    def spend_attempt(self, e164: str, key: str, rules: Sequence[Any], now: datetime) -> Any:
        from outcall.caps import CapVerdict, judge, prune

        log = self.logs[e164]
        if key in log:
            return CapVerdict(True, judge({k: v for k, v in log.items() if k != key}, rules, now).counts, None)
        verdict = judge(log, rules, now)
        if verdict.allowed:
            self.logs[e164] = prune(log, now) | {key: now.timestamp()}
        return verdict


def oracle_window_open(e164: str, at: datetime, margin: timedelta, default_zone: str) -> bool:
    """Independent of windows.py's interval arithmetic: every zone's wall clock at `at` and at
    `at + margin` inside one interval of that local day's hours."""
    from outcall.windows import DEFAULT_HOURS, REGION_PRESETS, number_facts

    region, zones = number_facts(e164)
    preset = REGION_PRESETS.get(region or "")
    weekly = preset.weekly if preset else DEFAULT_HOURS
    for zone in zones or (default_zone,):
        tz = ZoneInfo(zone)
        start, end = at.astimezone(tz), (at + margin).astimezone(tz)
        if start.date() != end.date():
            return False
        day = weekly[start.isoweekday() - 1]
        s_min = start.hour * 60 + start.minute + start.second / 60
        e_min = end.hour * 60 + end.minute + end.second / 60
        if not any(a <= s_min and e_min <= b for a, b in day):
            return False
    return True


def end_calls(
    calls: list[tuple[datetime, str]],
    hopper: list[tuple[datetime, str]],
    state: dict[str, str],
    attempts: Mapping[str, int],
    rng: random.Random,
    now: datetime,
) -> None:
    """Calls that ended by `now`: no-answer ones go back to the hopper while attempts remain."""
    while calls and calls[0][0] <= now:
        _, e164 = heapq.heappop(calls)
        if rng.random() < NO_ANSWER_RATE and attempts[e164] < MAX_ATTEMPTS:
            state[e164] = "queued"
            heapq.heappush(hopper, (now + timedelta(minutes=RETRY_MINUTES), e164))
        else:
            state[e164] = "done"


def cap_overruns(releases: Sequence[tuple[datetime, str]], caps: Sequence[Any]) -> int:
    """Releases that were one too many in some rolling window of their number (a sliding window over
    each number's release times, independent of caps.judge)."""
    by_number: dict[str, list[datetime]] = defaultdict(list)
    for at, e164 in releases:
        by_number[e164].append(at)
    overruns = 0
    for times in by_number.values():
        for rule in caps:
            j = 0
            for i, at in enumerate(times):
                while times[j] <= at - rule.window:
                    j += 1
                if i - j + 1 > rule.attempts:
                    overruns += 1
    return overruns


def run(contacts: int = 10_000, seed: int = 14) -> dict[str, Any]:
    from outcall.caps import parse_caps
    from outcall.compliance import Gate
    from outcall.models import DEFAULT_MARGIN_MINUTES, Task, TaskSettings
    from outcall.store.hopper import release_key
    from outcall.windows import number_facts, verdict

    rng = random.Random(seed)
    numbers = numbers_for(contacts, rng)
    caps = parse_caps("3/24h,10/30d")
    store = MemoryStore()
    task = Task(
        task_id="tsk_bench",
        name="bench",
        provider="nxcloud",
        type="auto",
        settings=TaskSettings.model_validate({"compliance": {}, "callingWindow": {"timezone": "UTC"}}),
        created_at=START,
        updated_at=START,
    )
    gate = Gate(store, task, caps)  # type: ignore[arg-type]
    margin = timedelta(minutes=DEFAULT_MARGIN_MINUTES)
    end = START + timedelta(hours=HOURS)

    # do-not-call entries appear while the task runs: 3% of the numbers, at random times
    for e164 in rng.sample(numbers, len(numbers) * 3 // 100):
        store.dnc[e164] = START + timedelta(minutes=rng.randrange(HOURS * 60))

    attempts: dict[str, int] = Counter()
    state: dict[str, str] = {n: "queued" for n in numbers}
    last_decision: dict[str, str] = {}
    hopper: list[tuple[datetime, str]] = [(START, n) for n in numbers]
    heapq.heapify(hopper)
    calls: list[tuple[datetime, str]] = []  # (ends at, number)
    releases: list[tuple[datetime, str]] = []
    decisions = 0
    gate_seconds = gate_cpu = 0.0
    deferred = Counter()

    now = START
    while now < end:
        end_calls(calls, hopper, state, attempts, rng, now)
        due: list[dict[str, Any]] = []
        while hopper and hopper[0][0] <= now and len(due) < RELEASES_PER_TICK:
            _, e164 = heapq.heappop(hopper)
            attempt = attempts[e164] + 1
            due.append({"e164": e164, "attempts": attempt, "releaseKey": release_key(task.task_id, e164, attempt)})
        if due:
            began, cpu = time.perf_counter(), time.process_time()
            screened = gate.screen(due, now)
            gate_seconds += time.perf_counter() - began
            gate_cpu += time.process_time() - cpu
            decisions += len(due)
            for e164, _, audit in screened.skip:
                state[e164] = "skipped"
                last_decision[e164] = audit["rule"]
            for e164, _, at, audit in screened.defer:
                deferred[audit["rule"]] += 1
                last_decision[e164] = audit["rule"]
                heapq.heappush(hopper, (at, e164))
            for contact in screened.send:
                e164 = contact["e164"]
                attempts[e164] += 1
                state[e164] = "released"
                releases.append((now, e164))
                heapq.heappush(calls, (now + timedelta(minutes=CALL_MINUTES), e164))
        now += TICK

    # ---------------------------------------------------------------- the oracle
    outside = sum(1 for at, e164 in releases if not oracle_window_open(e164, at, margin, "UTC"))
    after_listing = sum(1 for at, e164 in releases if e164 in store.dnc and store.dnc[e164] <= at)
    overruns = cap_overruns(releases, caps)
    final = Counter(state.values())
    queued_with_reason = sum(1 for n, s in state.items() if s == "queued" and n in last_decision)
    queued_never_due = sum(1 for n, s in state.items() if s == "queued" and n not in last_decision)
    accounted = final["done"] + final["skipped"] + final["released"] + queued_with_reason + queued_never_due
    multi_zone = sum(1 for n in numbers if len(number_facts(n)[1]) > 1)
    regions = Counter(number_facts(n)[0] for n in numbers)

    # the window check alone, on random instants
    sample = [(rng.choice(numbers), START + timedelta(seconds=rng.randrange(HOURS * 3600))) for _ in range(20_000)]
    assert gate.rules is not None
    began, cpu = time.perf_counter(), time.process_time()
    for e164, at in sample:
        verdict(e164, at, gate.rules)
    window_rate = len(sample) / (time.perf_counter() - began)
    window_cpu_rate = len(sample) / (time.process_time() - cpu)

    result = {
        "contacts": len(numbers),
        "regions": dict(sorted((k or "?", v) for k, v in regions.items())),
        "multiZoneNumbers": multi_zone,
        "simulatedHours": HOURS,
        "start": START.isoformat(),
        "dncEntriesAddedWhileRunning": len(store.dnc),
        "caps": [r.label() for r in caps],
        "releases": len(releases),
        "decisions": decisions,
        "deferred": dict(deferred),
        "skippedDnc": final["skipped"],
        "finalStates": dict(final),
        "accountedFor": accounted,
        "releasesOutsideWindow": outside,
        "releasesAfterListing": after_listing,
        "capOverruns": overruns,
        "numbersCapped": sum(1 for n in numbers if last_decision.get(n) == "cap"),
        "gateDecisionsPerSecond": round(decisions / gate_seconds) if gate_seconds else None,
        "gateDecisionsPerCpuSecond": round(decisions / gate_cpu) if gate_cpu else None,
        "windowChecksPerSecond": round(window_rate),
        "windowChecksPerCpuSecond": round(window_cpu_rate),
        "note": "gate with an in-memory store (policy only); through DynamoDB each release adds one "
        "BatchGetItem share and one read + conditional write of the number's attempt log",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=10_000)
    args = parser.parse_args()
    print(json.dumps(run(args.contacts), indent=2))


if __name__ == "__main__":
    main()
