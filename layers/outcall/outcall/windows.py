"""Calling windows in the callee's local time: pure rules, no store.

A number's time zones come from phonenumbers (`timezone.time_zones_for_number`); a number that maps to
several zones (a US toll-free number, a Russian or Australian mobile) is callable only while the
window is open in *every* one of them; one that maps to none uses the task's default zone
(`settings.callingWindow.timezone`).

The window of a callee is the intersection of

- the preset of the callee's region (REGION_PRESETS, each naming its source), when there is one,
- the task's weekly hours (`settings.compliance.window.hours`; a region without a preset and a task
  without hours get DEFAULT_HOURS),
- the task's hours for that region (`settings.compliance.window.regions.<CC>`), which may narrow the
  preset but not widen it (`check_policy` refuses that with a 422 naming the field),

closed on the task's restricted dates (holidays, in the callee's local date). A contact is released only
while the window stays open for `marginMinutes` more (the time a call takes); otherwise it is due again
at the window's next opening (`Verdict.next_open`).

Everything is computed as intervals in UTC: each zone's local opening hours of the days around `now`
are converted with zoneinfo (so a DST change moves them as it moves the clocks), shortened by the
margin, and intersected over the zones.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo

from pydantic import Field

from outcall.errors import Unprocessable
from outcall.models import ALL_DAYS, Hours, Model, WindowPolicy, minutes_of

HORIZON_DAYS: Final = 15  # how far ahead the next opening is looked for
UNKNOWN_ZONE: Final = "Etc/Unknown"

Interval = tuple[int, int]  # minutes from local midnight, [start, end)
Weekly = tuple[tuple[Interval, ...], ...]  # index 0 = Monday ... 6 = Sunday


# ---------------------------------------------------------------- policy models


@dataclass(frozen=True)
class Preset:
    region: str
    weekly: Weekly
    source: str


def weekly_of(hours: Iterable[Hours]) -> Weekly:
    days: list[list[Interval]] = [[] for _ in range(7)]
    for h in hours:
        for d in h.days:
            days[d - 1].append((minutes_of(h.start), minutes_of(h.end)))
    return tuple(tuple(_merge(d)) for d in days)


def _merge(intervals: Iterable[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _every(days: Sequence[int], start: str, end: str) -> list[Hours]:
    return [Hours(days=list(days), start=start, end=end)]


# Regions whose rules name calling hours. Regions not here use the task's hours (or DEFAULT_HOURS).
REGION_PRESETS: Final[dict[str, Preset]] = {
    p.region: p
    for p in (
        Preset(
            "US",
            weekly_of(_every(ALL_DAYS, "08:00", "21:00")),
            "47 CFR 64.1200(c)(1): no telephone solicitation before 8 a.m. or after 9 p.m. local time at the "
            "called party's location",
        ),
        Preset(
            "CA",
            weekly_of(_every((1, 2, 3, 4, 5), "09:00", "21:30") + _every((6, 7), "10:00", "18:00")),
            "CRTC Unsolicited Telecommunications Rules, Part III (Telemarketing Rules): weekdays 9:00-21:30, "
            "weekends 10:00-18:00, the called consumer's time",
        ),
        Preset(
            "CN",
            weekly_of(_every(ALL_DAYS, "08:00", "21:00")),
            "Tencent Cloud CCC, 电话号码外呼规则 (https://cloud.tencent.com.cn/document/product/679/79155): "
            "outbound calls only 8:00-21:00 Beijing time",
        ),
        Preset(
            "AU",
            weekly_of(_every((1, 2, 3, 4, 5), "09:00", "20:00") + _every((6,), "09:00", "17:00")),
            "Telecommunications (Telemarketing and Research Calls) Industry Standard 2017, calling times: "
            "weekdays 9:00-20:00, Saturday 9:00-17:00, not on Sunday or a national public holidays",
        ),
        Preset(
            "FR",
            weekly_of(_every((1, 2, 3, 4, 5), "10:00", "13:00") + _every((1, 2, 3, 4, 5), "14:00", "20:00")),
            "Code de la consommation art. D223-8 (décret n° 2022-1313): weekdays 10:00-13:00 and 14:00-20:00, "
            "not on weekends or public holidays",
        ),
    )
}
DEFAULT_HOURS: Final[Weekly] = weekly_of(_every(ALL_DAYS, "09:00", "20:00"))


def _intersect_day(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < end:
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def intersect(a: Weekly, b: Weekly) -> Weekly:
    return tuple(tuple(_intersect_day(x, y)) for x, y in zip(a, b, strict=True))


def _within(inner: Weekly, outer: Weekly) -> bool:
    return intersect(inner, outer) == tuple(tuple(_merge(d)) for d in inner)


def check_policy(policy: WindowPolicy, field: str = "settings.compliance.window") -> None:
    """A task may narrow a region's preset, never widen it: hours given for a region with a preset that
    reach outside it are a 422 naming the field."""
    for region, hours in policy.regions.items():
        preset = REGION_PRESETS.get(region)
        if preset is None:
            continue
        for i, h in enumerate(hours):
            if not _within(weekly_of([h]), preset.weekly):
                name = f"{field}.regions.{region}[{i}]"
                message = (
                    f"{h.start}-{h.end} on days {h.days} widens the {region} preset ({describe(preset.weekly)}; "
                    f"{preset.source.split(':')[0]}): a task may only narrow it"
                )
                raise Unprocessable(f"{name}: {message}", details=[{"field": name, "message": message}])


def describe(weekly: Weekly) -> str:
    names = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    parts = []
    for name, day in zip(names, weekly, strict=True):
        text = ",".join(f"{s // 60:02d}:{s % 60:02d}-{e // 60:02d}:{e % 60:02d}" for s, e in day) or "closed"
        parts.append(f"{name} {text}")
    return " ".join(parts)


# ---------------------------------------------------------------- numbers


@lru_cache(maxsize=65536)
def number_facts(e164: str) -> tuple[str | None, tuple[str, ...]]:
    """(ISO region, IANA zones) of an E.164 number; zones phonenumbers does not know are left out."""
    # imported here: a handler that never checks a window (most task_control requests) does not load it
    import phonenumbers
    from phonenumbers import timezone as pn_timezone

    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None, ()
    region = phonenumbers.region_code_for_number(parsed)
    zones = tuple(z for z in pn_timezone.time_zones_for_number(parsed) if z != UNKNOWN_ZONE)
    return (region if region and region != "ZZ" else None), zones


@dataclass(frozen=True)
class Rules:
    """A task's window rules, resolved once per dispatcher run."""

    hours: Weekly | None
    regions: Mapping[str, Weekly]
    restricted: frozenset[date]
    margin: timedelta
    default_zone: str

    @classmethod
    def of(cls, policy: WindowPolicy, default_zone: str) -> Rules:
        return cls(
            hours=weekly_of(policy.hours) if policy.hours is not None else None,
            regions={r: weekly_of(h) for r, h in policy.regions.items()},
            restricted=frozenset(policy.restricted_dates),
            margin=timedelta(minutes=policy.margin_minutes),
            default_zone=default_zone,
        )

    def weekly_for(self, region: str | None) -> tuple[Weekly, str]:
        """The callee's weekly hours and where they come from."""
        preset = REGION_PRESETS.get(region or "")
        weekly = preset.weekly if preset else (self.hours if self.hours is not None else DEFAULT_HOURS)
        source = f"preset {region}" if preset else ("task hours" if self.hours is not None else "default hours")
        if preset and self.hours is not None:
            weekly = intersect(weekly, self.hours)
            source += " and task hours"
        if region and region in self.regions:
            weekly = intersect(weekly, self.regions[region])
            source += f" and task hours for {region}"
        return weekly, source


class Verdict(Model):
    open: bool
    zones: list[str]
    region: str | None = None
    hours: str = Field(description="where the hours come from: preset, task hours, default hours")
    open_until: datetime | None = Field(default=None, description="open: a call may start before this time")
    next_open: datetime | None = Field(
        default=None, description="closed: when the window opens next (None: not in 15 days)"
    )


@lru_cache(maxsize=4096)
def _zone_open_utc(zone: str, weekly: Weekly, restricted: frozenset[date], day: date) -> tuple[Interval, ...]:
    """The opening hours of `zone`'s local dates day-1 .. day+HORIZON_DAYS, as UTC epoch minutes."""
    tz = ZoneInfo(zone)
    out: list[Interval] = []
    for offset in range(-1, HORIZON_DAYS + 1):
        local = day + timedelta(days=offset)
        if local in restricted:
            continue
        for start, end in weekly[local.isoweekday() - 1]:
            begin = _local_to_epochminutes_of(local, start, tz)
            finish = _local_to_epochminutes_of(local, end, tz)
            if begin < finish:
                out.append((begin, finish))
    return tuple(out)


def _local_to_epochminutes_of(day: date, minute: int, tz: ZoneInfo) -> int:
    # wall-clock arithmetic: 02:30 on a spring-forward day does not exist; zoneinfo maps it forward
    wall = datetime.combine(day, time(0)) + timedelta(minutes=minute)
    moment = wall.replace(tzinfo=tz)
    return int(moment.astimezone(UTC).timestamp()) // 60


def _intersect_many(lists: Sequence[Sequence[Interval]]) -> list[Interval]:
    current = list(lists[0])
    for other in lists[1:]:
        current = _intersect_day(current, other)
    return current


@lru_cache(maxsize=16384)
def _open_utc(
    zones: tuple[str, ...], weekly: Weekly, restricted: frozenset[date], day: date, margin: int
) -> tuple[Interval, ...]:
    """When a call may *start* for a callee of these zones, as sorted epoch-minute intervals: every
    zone open, and staying open `margin` minutes more."""
    per_zone = [_zone_open_utc(z, weekly, restricted, day) for z in zones]
    both = _intersect_many(per_zone)
    shortened = [(s, e - margin) for s, e in both if e - margin > s]
    return tuple(shortened)


def _from_minute(minute: int) -> datetime:
    return datetime.fromtimestamp(minute * 60, UTC)


def verdict(e164: str, now: datetime, rules: Rules) -> Verdict:
    """Whether a call to `e164` may start at `now` (see the module docstring)."""
    region, zones = number_facts(e164)
    zones = zones or (rules.default_zone,)
    weekly, source = rules.weekly_for(region)
    margin = int(rules.margin.total_seconds() // 60)
    day = now.astimezone(UTC).date()
    intervals = _open_utc(zones, weekly, rules.restricted, day, margin)
    stamp = now.timestamp()
    i = bisect.bisect_right(intervals, (stamp / 60, float("inf"))) - 1
    if i >= 0 and intervals[i][0] * 60 <= stamp < intervals[i][1] * 60:
        until = _from_minute(intervals[i][1])
        return Verdict(open=True, zones=list(zones), region=region, hours=source, open_until=until)
    nxt = _from_minute(intervals[i + 1][0]) if i + 1 < len(intervals) else None
    return Verdict(open=False, zones=list(zones), region=region, hours=source, next_open=nxt)


def next_open_at(e164: str, moment: datetime, rules: Rules) -> datetime | None:
    """The first time at or after `moment` a call to `e164` may start (None: not within 15 days)."""
    found = verdict(e164, moment, rules)
    return moment if found.open else found.next_open
