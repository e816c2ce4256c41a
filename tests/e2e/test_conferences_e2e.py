"""Conference pre-meeting dialing over HTTP through the local stack: a meeting a few seconds
ahead, callees added, the schedule fires and they are dialled on the Quanshi simulator."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

pytestmark = pytest.mark.slow


def test_callees_are_dialled_when_the_schedule_fires(local_stack: Any) -> None:
    event_id = str(random.randint(10**8, 10**9))
    start = (datetime.now(UTC) + timedelta(seconds=6)).replace(microsecond=0)
    put = local_stack.authed("PUT", f"/events/{event_id}", json={"title": "e2e", "startTime": start.isoformat()})
    assert put.status_code == 201, put.text
    callees = [
        {"name": "user1", "company": "quanshi.com", "countryCode": "86", "mobile": "18100000030"},
        {"name": "user2", "company": "quanshi.com", "countryCode": "86", "areaCode": "10", "phone": "58512042"},
        {"name": "bad", "countryCode": "86", "mobile": "123"},
    ]
    body = {"token": "x", "eventId": int(event_id), "beforeMinutes": 0, "callList": callees}
    added = local_stack.authed("POST", f"/events/{event_id}/calls", json=body)
    assert added.status_code == 200, added.text
    data = added.json()["data"]
    assert data["callType"] == 1 and len(data["scheduledCall"]["successData"]) == 2
    assert [r["errorType"] for r in data["scheduledCall"]["failedData"]] == [1]
    view = local_stack.authed("GET", f"/events/{event_id}").json()
    assert len(view["schedules"]) == 1 and {c["dialState"] for c in view["callees"]} == {"pending"}

    def dialled() -> Any:
        got = local_stack.authed("GET", f"/events/{event_id}").json()
        return got if {c["dialState"] for c in got["callees"]} == {"dialled"} else None

    final = local_stack.wait_for(dialled, timeout=30)
    assert all(c["lastResult"]["state"] == "dialled" for c in final["callees"])
    assert final["schedules"] == []
    fired = [d for d in local_stack.deliveries("schedule") if d["detail"].startswith(f"conf-{event_id}-")]
    assert len(fired) == 1, local_stack.deliveries("schedule")
    assert local_stack.get(f"/events/{event_id}").status_code == 401
    assert "/events/{eventId}/calls" in local_stack.get("/openapi.json").json()["paths"]
