"""Request and answer examples of the OpenAPI document (the handlers' route declarations use them).

Each example is a body the API takes or gives; tests/integration/test_api_docs.py checks every one
against its schema. `POST /events/{eventId}/calls` uses the example of Quanshi's own
`event/call/add` page (/work/shared/seeds/quanshi-event-call-add.txt), field for field."""

from __future__ import annotations

from typing import Any

TASK_ID = "tsk_5f0c2a9e4b7d41c3a8e6"
IMPORT_ID = "imp_8d1e0b6f2c4a9e7d3b5f1a0c"
NOW = "2030-01-01T08:00:00Z"

CREATE_TASK: dict[str, Any] = {
    "name": "January renewals",
    "provider": "nxcloud",
    "type": "robot",
    "settings": {
        "callerIds": ["+8651088880000"],
        "concurrency": 10,
        "ringTimeoutSeconds": 30,
        "retry": {"rounds": 1, "intervalMinutes": 60},
        "callingWindow": {
            "timezone": "Asia/Shanghai",
            "start": "09:00:00",
            "end": "20:00:00",
            "weekdays": [1, 2, 3, 4, 5],
        },
        "autoStartAt": "2030-01-02T09:00:00+08:00",
    },
}
TASK: dict[str, Any] = {
    "taskId": TASK_ID,
    "name": "January renewals",
    "provider": "nxcloud",
    "type": "robot",
    "status": "ready",
    "settings": {
        "callerIds": ["+8651088880000"],
        "concurrency": 10,
        "ringTimeoutSeconds": 30,
        "retry": {"rounds": 1, "intervalMinutes": 60},
        "callingWindow": {
            "timezone": "Asia/Shanghai",
            "start": "09:00:00",
            "end": "20:00:00",
            "weekdays": [1, 2, 3, 4, 5],
            "blackoutDates": [],
        },
        "autoStartAt": "2030-01-02T09:00:00+08:00",
        "providerOptions": {},
    },
    "providerTaskId": "2002514",
    "autoDelete": False,
    "createdAt": NOW,
    "updatedAt": NOW,
    "version": 1,
}
TASK_DETAIL: dict[str, Any] = {
    **TASK,
    "status": "running",
    "counts": {
        "contacts": {"queued": 420, "released": 20, "done": 1398, "skipped": 2},
        "calls": {"completed": 903, "no-answer": 411, "busy": 37},
        "outcomes": {"completed": 903, "no-answer": 398, "busy": 35},
    },
    "hopper": {
        "queued": 420,
        "released": 20,
        "done": {"completed": 903, "no-answer": 398, "busy": 35, "failed": 62},
        "skipped": 2,
        "hopperLevel": 20,
        "releaseMode": "paced",
        "nextReleaseAt": "2030-01-02T09:05:00+08:00",
    },
}
TASK_PAGE: dict[str, Any] = {"items": [TASK], "nextToken": "eyJwayI6IlRBU0sjdHNrXzVmMGMyYTllIn0="}
UPDATE_TASK: dict[str, Any] = {"name": "January renewals (2nd run)", "settings": {"concurrency": 20}}
CLONE_TASK: dict[str, Any] = {"name": "February renewals", "withContacts": True}
CLONE_RESULT: dict[str, Any] = {
    "task": {**TASK, "taskId": "tsk_93b1d7e0a2c64f58b0d4", "name": "February renewals", "providerTaskId": "2002601"},
    "contactsImportId": IMPORT_ID,
}

ADD_CONTACTS: dict[str, Any] = {
    "contacts": [
        {"name": "张三", "mobile": "13800138000", "externalId": "A-1", "variables": {"plan": "gold"}},
        {"name": "Li Si", "countryCode": "44", "mobile": "20 7946 0958"},
        {"name": "again", "mobile": "138-0013-8000"},
        {"name": "bad", "mobile": "12345"},
    ],
    "defaultRegion": "CN",
}
ADD_CONTACTS_RESULT: dict[str, Any] = {
    "importId": IMPORT_ID,
    "taskId": TASK_ID,
    "status": "completed",
    "rows": 4,
    "accepted": 2,
    "duplicate": 1,
    "invalid": 1,
    "queued": 2,
    "contacts": [
        {"index": 0, "outcome": "accepted", "e164": "+8613800138000"},
        {"index": 1, "outcome": "accepted", "e164": "+442079460958"},
        {"index": 2, "outcome": "duplicate", "e164": "+8613800138000", "reason": "duplicate"},
        {"index": 3, "outcome": "invalid", "reason": "too_short", "message": "the number is too short"},
    ],
}
CREATE_UPLOAD: dict[str, Any] = {"filename": "renewals.csv", "defaultRegion": "CN"}

# ---------------------------------------------------------------- conferences (Quanshi's shapes)

PUT_MEETING: dict[str, Any] = {
    "title": "Q1 results call",
    "startTime": "2030-01-15T10:00:00+08:00",
    "provider": "quanshi",
    "durationMinutes": 60,
}
# The request example of Quanshi's event/call/add page, field for field (eventId 542818 is the path's).
QUANSHI_ADD_CALLS: dict[str, Any] = {
    "eventId": 542818,
    "callList": [
        {
            "company": "quanshi.com",
            "countryCode": "86",
            "mobile": "18100000030",
            "name": "user1",
            "areaCode": "",
            "phone": "",
        }
    ],
}
# The answer example of the same page (a scheduled call before the meeting).
QUANSHI_ADD_CALLS_ANSWER: dict[str, Any] = {
    "timeStamp": 1691662248380,
    "code": 200,
    "msg": "Successfully to create the event call!",
    "data": {
        "scheduledCall": {
            "successData": [
                {
                    "id": "64d4b7a8ebf537001bebe2e4",
                    "areaCode": "",
                    "company": "时代中国",
                    "countryCode": "86",
                    "mobile": "18151073681",
                    "name": "测试",
                    "phone": "",
                    "errorType": None,
                }
            ],
            "failedData": None,
        },
        "realTimeCall": None,
        "callType": 1,
    },
    "requestId": "",
}

# ---------------------------------------------------------------- imports and calls

UPLOAD_TICKET: dict[str, Any] = {
    "importId": IMPORT_ID,
    "uploadUrl": f"https://outcall-call-lists-123456789012.s3.amazonaws.com/imports/{TASK_ID}/{IMPORT_ID}/renewals.csv"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=900&X-Amz-Signature=...",
    "method": "PUT",
    "headers": {"Content-Type": "text/csv"},
    "objectKey": f"imports/{TASK_ID}/{IMPORT_ID}/renewals.csv",
    "expiresAt": "2030-01-01T08:15:00Z",
    "note": "Each PUT of uploadUrl is one import: the first is this importId; a later PUT (a corrected file) starts "
    "its own import, listed in laterImports of this one. Contacts already in the task count as duplicates.",
}
IMPORT_JOB: dict[str, Any] = {
    "importId": IMPORT_ID,
    "taskId": TASK_ID,
    "source": "s3",
    "status": "completed",
    "objectKey": f"imports/{TASK_ID}/{IMPORT_ID}/renewals.csv",
    "filename": "renewals.csv",
    "defaultRegion": "CN",
    "file": {"kind": "csv", "header": ["姓名", "手机", "订单号"], "encoding": "utf-8-sig", "delimiter": ","},
    "rowsRead": 4,
    "chunks": 1,
    "chunksDone": 1,
    "rows": 4,
    "accepted": 2,
    "duplicate": 1,
    "invalid": 1,
    "reasons": {"duplicate": 1, "too_short": 1},
    "reportUrl": "https://outcall-call-lists-123456789012.s3.amazonaws.com/reports/imp_8d1e0b6f2c4a9e7d3b5f1a0c.csv?...",
    "laterImports": ["imp_41c0e2a9b8d7f6e5c4b3a291"],
    "createdAt": NOW,
    "updatedAt": "2030-01-01T08:00:09Z",
    "startedAt": "2030-01-01T08:00:03Z",
    "finishedAt": "2030-01-01T08:00:09Z",
}
JSON_IMPORT_QUEUED: dict[str, Any] = {
    "importId": IMPORT_ID,
    "taskId": TASK_ID,
    "source": "json",
    "status": "running",
    "defaultRegion": "CN",
    "file": {"kind": "json", "header": ["name", "mobile", "externalId"]},
    "rowsRead": 10000,
    "chunks": 2,
    "chunksDone": 0,
    "rows": 0,
    "accepted": 0,
    "duplicate": 0,
    "invalid": 0,
    "reasons": {},
    "createdAt": NOW,
    "updatedAt": NOW,
    "startedAt": NOW,
}
IMPORT_PAGE: dict[str, Any] = {"items": [IMPORT_JOB], "nextToken": None}
CONTACT_PAGE: dict[str, Any] = {
    "items": [
        {
            "taskId": TASK_ID,
            "e164": "+8613800138000",
            "name": "张三",
            "externalId": "A-1",
            "variables": {"plan": "gold"},
            "importId": IMPORT_ID,
            "row": 2,
            "state": "done",
            "attempts": 1,
            "outcome": "completed",
            "callStatus": "completed",
            "createdAt": NOW,
            "updatedAt": "2030-01-02T09:07:41Z",
        }
    ],
    "nextToken": None,
}
CALL_PAGE: dict[str, Any] = {
    "items": [
        {
            "recordId": "nxcloud#9f1c2e7a",
            "taskId": TASK_ID,
            "provider": "nxcloud",
            "providerCallId": "9f1c2e7a",
            "phone": "+86138****8000",
            "attempt": 1,
            "status": "completed",
            "startedAt": "2030-01-02T09:06:58Z",
            "answeredAt": "2030-01-02T09:07:04Z",
            "endedAt": "2030-01-02T09:07:41Z",
            "durationSeconds": 37,
            "firstSeenAt": "2030-01-02T09:07:42Z",
            "updatedAt": "2030-01-02T09:07:42Z",
        }
    ],
    "nextToken": None,
}
MEETING: dict[str, Any] = {
    "eventId": "542818",
    "title": "Q1 results call",
    "startTime": "2030-01-15T02:00:00Z",
    "provider": "quanshi",
    "durationMinutes": 60,
    "status": "scheduled",
    "revision": 1,
    "createdAt": NOW,
    "updatedAt": NOW,
    "version": 1,
    "callees": [
        {
            "calleeId": "20e9b314baef71bf7c035a43",
            "name": "user1",
            "company": "quanshi.com",
            "countryCode": "86",
            "mobile": "18100000030",
            "areaCode": "",
            "phone": "",
            "role": 0,
            "e164": "+8618100000030",
            "beforeMinutes": 30,
            "dialState": "pending",
            "createdAt": NOW,
            "updatedAt": NOW,
            "dueAt": "2030-01-15T01:30:00Z",
        }
    ],
    "schedules": [
        {
            "name": "conf-542818-20300115T013000Z",
            "dueAt": "2030-01-15T01:30:00Z",
            "revision": 1,
            "expression": "at(2030-01-15T01:30:00)",
        }
    ],
}
