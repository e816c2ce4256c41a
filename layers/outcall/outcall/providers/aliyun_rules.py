"""What the aliyun documents say about CloudCreateTask fields, without the SDK (so the API's
providerOptions check does not load it): the fields outcall owns and the RetryStrategy rule.

Sources: SDK `alibabacloud-dyvmsapi20170525` CloudCreateTaskRequest / CloudQueryTask TaskProperties
docstrings and seeds/aliyun-vms-cloud-create-task.txt."""

from __future__ import annotations

import itertools
import json
import re

# set by outcall from the task itself (EnterpriseId from the account, Name and Type from the task,
# AutoDelete from the request's autoDelete, TaskId from the provider): never from providerOptions
OWNED_FIELDS = frozenset({"EnterpriseId", "TaskId", "Name", "Type", "AutoDelete"})

_DHM = re.compile(r"^(\d+)-(\d+)-(\d+)$")


def _minutes(value: object) -> int:
    match = _DHM.match(str(value))
    if not match:
        raise ValueError(f"round time {value!r} is not d-h-m (days-hours-minutes, e.g. 0-1-30)")
    days, hours, minutes = (int(g) for g in match.groups())
    return days * 1440 + hours * 60 + minutes


def check_retry_strategy(value: str, time_type: int = 1) -> None:
    """RetryStrategy is JSON: basic mode `{"retry": n, "strategy": [{"round": r, "time": "d-h-m"}]}`, or
    advanced mode, a list of such objects each with a `condition`. Timed from the first call
    (RetryStrategyTimeType 1, the default) each round's time must be later than the round before.
    Raises ValueError saying what is wrong."""
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise ValueError("RetryStrategy is not JSON") from exc
    blocks = parsed if isinstance(parsed, list) else [parsed]
    for block in blocks:
        if not isinstance(block, dict) or not isinstance(block.get("strategy"), list):
            raise ValueError('RetryStrategy needs {"retry": n, "strategy": [{"round": r, "time": "d-h-m"}]}')
        rounds = sorted(block["strategy"], key=lambda r: int(r.get("round", 0)) if isinstance(r, dict) else 0)
        times = [_minutes(r.get("time")) if isinstance(r, dict) else _minutes(None) for r in rounds]
        if time_type == 1 and any(later <= earlier for earlier, later in itertools.pairwise(times)):
            raise ValueError(
                "with RetryStrategyTimeType 1 (timed from the first call) each round's time must be "
                "later than the round before"
            )
