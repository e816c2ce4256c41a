"""The only code that talks to DynamoDB.

One table, keys `pk`/`sk`, one GSI (`gsi1pk`/`gsi1sk`) and a TTL attribute `expiresAt`:

| item          | pk                  | sk                  | gsi1pk        | gsi1sk                |
|---------------|---------------------|---------------------|---------------|-----------------------|
| API token     | TOKEN#<sha256>      | TOKEN               | TOKENS        | <createdAt>#<name>    |
| import job    | IMPORT#<importId>   | IMPORT              | TASK#<taskId> | IMPORT#<createdAt>    |
| task          | TASK#<taskId>       | TASK                | TASKS         | <createdAt>#<taskId>  |
| task counts   | TASK#<taskId>       | COUNTS              | -             | -                     |
| task counter  | PROVIDER#<provider> | TASKCOUNT           | -             | -                     |

Each kind of item has its module in this package (tokens, imports, tasks, ...), a mixin of
`Store`; later capabilities add theirs the same way.

Tasks. `GET /tasks` is one Query of gsi1 `TASKS` (newest first) with the status, provider and
name-prefix filters as a FilterExpression; pages are cut at `limit` items and the next page
starts after the last item returned (`nextToken` is that key, base64 JSON). A deployment holds
at most 100 tasks per provider account, so the one `TASKS` partition stays small. A task item
carries `version` (bumped by every write, checked by every conditional write) and, while an
operation is at its provider, `pending` (`create`, `start`, `pause`, `stop`, `update`, `delete`,
...) and `pendingAt`: claiming an operation is a conditional update that only one caller wins;
a claim older than PENDING_STALE_SECONDS (a crashed caller) may be taken over. The task counter
of a provider is updated in the same transaction that puts or deletes a task, conditioned on
staying under the limit. The counts item (`contacts.<status>`, `calls.<outcome>`) is kept current
by the writers of contacts and calls (`add_task_counts`); reading a task is one Query of its
partition, which returns the task and its counts together.
"""

from __future__ import annotations

from functools import lru_cache

from outcall.store.base import GSI1, StoreBase, decode_page_token, encode_page_token, utcnow
from outcall.store.imports import ImportItems
from outcall.store.tasks import PENDING_STALE_SECONDS, TaskItems
from outcall.store.tokens import TokenItems

__all__ = [
    "GSI1",
    "PENDING_STALE_SECONDS",
    "Store",
    "StoreBase",
    "decode_page_token",
    "default_store",
    "encode_page_token",
    "utcnow",
]


class Store(TokenItems, ImportItems, TaskItems):
    """Every item of the table, one mixin per kind of item."""


@lru_cache(maxsize=1)
def default_store() -> Store:
    """The store of this Lambda environment (one per process, reused across invocations)."""
    return Store()
