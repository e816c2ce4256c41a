"""Conference meetings, their callees and their dialing schedules: one partition per meeting.

A callee's sort key is its E.164 number, so adding a number the meeting already has is a failed
conditional put (two parallel requests cannot both add it). A callee's dial state only changes
with a conditional update on the state it is expected to be in (`pending` -> `dialling` ...), so
a schedule delivered twice dials nobody twice."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from outcall.models import Meeting, MeetingCallee, MeetingSchedule
from outcall.store.base import StoreBase, _dynamo, _is_conditional_failure, _plain

_INTERNAL = {"pk", "sk", "gsi1pk", "gsi1sk", "entity"}


def _meeting_pk(event_id: str) -> str:
    return f"MEETING#{event_id}"


def _clean(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in _plain(dict(item)).items() if k not in _INTERNAL}


class MeetingItems(StoreBase):
    # ------------------------------------------------------------ meetings
    def put_meeting(self, meeting: Meeting, *, expected_version: int | None) -> bool:
        """Create (`expected_version` None: only if absent) or replace the meeting written at
        `expected_version`; False when another writer got there first."""
        item = {
            "pk": _meeting_pk(meeting.event_id),
            "sk": "MEETING",
            "entity": "meeting",
            **meeting.model_dump(mode="json", by_alias=True, exclude_none=True),
        }
        if expected_version is None:
            condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        else:
            condition = {
                "ConditionExpression": "version = :v",
                "ExpressionAttributeValues": {":v": expected_version},
            }
        try:
            self.table.put_item(Item=_dynamo(item), **condition)
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return False
            raise
        return True

    def get_meeting(self, event_id: str) -> Meeting | None:
        item = self._get(_meeting_pk(event_id), "MEETING", consistent=True)
        return Meeting.model_validate(_clean(item)) if item else None

    def meeting_partition(self, event_id: str) -> tuple[Meeting | None, list[MeetingCallee], list[MeetingSchedule]]:
        """The meeting, its callees and its schedules: one (paged) Query of its partition."""
        kwargs: dict[str, Any] = {"KeyConditionExpression": Key("pk").eq(_meeting_pk(event_id)), "ConsistentRead": True}
        meeting: Meeting | None = None
        callees: list[MeetingCallee] = []
        schedules: list[MeetingSchedule] = []
        while True:
            page = self.table.query(**kwargs)
            for raw in page.get("Items", []):
                sk = raw["sk"]
                if sk == "MEETING":
                    meeting = Meeting.model_validate(_clean(raw))
                elif sk.startswith("CALLEE#"):
                    callees.append(MeetingCallee.model_validate(_clean(raw)))
                elif sk.startswith("SCHEDULE#"):
                    schedules.append(MeetingSchedule.model_validate(_clean(raw)))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        callees.sort(key=lambda c: (c.created_at, c.callee_id))
        schedules.sort(key=lambda s: s.due_at)
        return meeting, callees, schedules

    # ------------------------------------------------------------ callees
    def add_meeting_callee(self, event_id: str, callee: MeetingCallee) -> bool:
        """Add a callee unless the meeting already has its number; False for a duplicate."""
        return self._put_new(
            _dynamo(
                {
                    "pk": _meeting_pk(event_id),
                    "sk": f"CALLEE#{callee.e164}",
                    "entity": "meeting-callee",
                    **callee.model_dump(mode="json", by_alias=True, exclude_none=True),
                }
            )
        )

    def set_callee_state(
        self,
        event_id: str,
        e164: str,
        *,
        expected: Iterable[str],
        state: str,
        changes: Mapping[str, Any] | None = None,
    ) -> bool:
        """Move a callee's dial state from one of `expected` to `state` (writing `changes`, camelCase
        attributes, alongside); False when it was in another state (someone else moved it)."""
        names: dict[str, str] = {"#state": "dialState"}
        values: dict[str, Any] = {":state": state}
        sets = ["#state = :state"]
        for i, (attr, value) in enumerate((changes or {}).items()):
            names[f"#a{i}"] = attr
            values[f":a{i}"] = _dynamo(value)
            sets.append(f"#a{i} = :a{i}")
        allowed = []
        for i, current in enumerate(expected):
            values[f":e{i}"] = current
            allowed.append(f":e{i}")
        try:
            self.table.update_item(
                Key={"pk": _meeting_pk(event_id), "sk": f"CALLEE#{e164}"},
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression=f"attribute_exists(pk) AND #state IN ({', '.join(allowed)})",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return False
            raise
        return True

    # ------------------------------------------------------------ schedules
    def put_meeting_schedule(self, event_id: str, schedule: MeetingSchedule) -> None:
        self.table.put_item(
            Item=_dynamo(
                {
                    "pk": _meeting_pk(event_id),
                    "sk": f"SCHEDULE#{schedule.due_at.isoformat()}",
                    "entity": "meeting-schedule",
                    **schedule.model_dump(mode="json", by_alias=True, exclude_none=True),
                }
            )
        )

    def delete_meeting_schedule(self, event_id: str, schedule: MeetingSchedule) -> None:
        self.table.delete_item(Key={"pk": _meeting_pk(event_id), "sk": f"SCHEDULE#{schedule.due_at.isoformat()}"})
