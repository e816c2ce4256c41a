"""Import job items and their chunks.

`IMPORT#<importId>` holds the job (`IMPORT`) and one item per chunk (`CHUNK#<n>`). While a job has not
ended it is also in the sparse index gsi2 (`IMPORTS#OPEN`, by creation time): the stalled-import check
reads the open imports there, without a scan; the status that ends a job removes it. A chunk item is
put once, when the planner has written the chunk's rows and reserved their numbers; a worker leases
it while it works, and finishing it is one transaction that marks it done and adds its counts to
the job and to the task: however often a chunk is delivered, its rows are counted once.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from outcall.models import ImportJob
from outcall.store.base import (
    GSI1,
    GSI2,
    StoreBase,
    _dynamo,
    _is_conditional_failure,
    _plain,
    update_expression,
    utcnow,
)

FINAL_IMPORT_STATUSES: Final = frozenset({"completed", "partial", "failed"})
OPEN_IMPORTS: Final = "IMPORTS#OPEN"  # gsi2pk of every import not yet ended
JOB_COUNTERS: Final = (
    "rowsRead",
    "rows",
    "accepted",
    "duplicate",
    "invalid",
)


def chunk_sk(chunk: int) -> str:
    return f"CHUNK#{chunk:06d}"


def task_counts_update(table_name: str, task_id: str, deltas: Mapping[str, int]) -> dict[str, Any] | None:
    """The UpdateItem (for a transaction or on its own) that adds `deltas` to a task's counts item;
    each key is a flat attribute name such as `contacts.added` or `calls.completed`."""
    deltas = {k: v for k, v in deltas.items() if v}
    if not deltas:
        return None
    names = {f"#n{i}": key for i, key in enumerate(deltas)}
    return {
        "TableName": table_name,
        "Key": {"pk": f"TASK#{task_id}", "sk": "COUNTS"},
        "UpdateExpression": "ADD " + ", ".join(f"#n{i} :d{i}" for i in range(len(deltas))),
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": {f":d{i}": v for i, v in enumerate(deltas.values())},
    }


class ImportItems(StoreBase):
    @staticmethod
    def _import_key(import_id: str) -> dict[str, str]:
        return {"pk": f"IMPORT#{import_id}", "sk": "IMPORT"}

    # ------------------------------------------------------------ import jobs
    def create_import(self, job: ImportJob, *, expires_at: datetime | None = None) -> bool:
        """Store a new import job; False when one with this id exists (a redelivered S3 event).
        `expires_at` lets DynamoDB forget a job whose upload never came."""
        item = {
            **self._import_key(job.import_id),
            "type": "import",
            "gsi1pk": f"TASK#{job.task_id}",
            "gsi1sk": f"IMPORT#{job.created_at.isoformat()}",
            **self._open_keys(job),
            **job.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"report_url"}),
        }
        if expires_at is not None:
            item["expiresAt"] = int(expires_at.timestamp())
        return self._put_new(_dynamo(item))

    @staticmethod
    def _open_keys(job: ImportJob) -> dict[str, str]:
        if job.status in FINAL_IMPORT_STATUSES:
            return {}
        return {"gsi2pk": OPEN_IMPORTS, "gsi2sk": f"{job.created_at.isoformat()}#{job.import_id}"}

    def open_imports(self) -> list[ImportJob]:
        """Every import that has not ended (waiting, queued, running), oldest first: one Query of
        the sparse index, whose partition holds only those."""
        kwargs: dict[str, Any] = {"IndexName": GSI2, "KeyConditionExpression": Key("gsi2pk").eq(OPEN_IMPORTS)}
        return [ImportJob.model_validate(self._strip(i)) for i in self._query_all(kwargs)]

    def get_import(self, import_id: str) -> ImportJob | None:
        item = self._get(f"IMPORT#{import_id}", "IMPORT", consistent=True)
        return ImportJob.model_validate(self._strip(item)) if item else None

    def list_imports(
        self, task_id: str, *, limit: int = 50, next_token: str | None = None
    ) -> tuple[list[ImportJob], str | None]:
        """A task's imports, newest first."""
        kwargs: dict[str, Any] = {
            "IndexName": GSI1,
            "KeyConditionExpression": Key("gsi1pk").eq(f"TASK#{task_id}") & Key("gsi1sk").begins_with("IMPORT#"),
            "ScanIndexForward": False,
        }
        found, token = self._query_page(kwargs, limit, next_token)
        return [ImportJob.model_validate(self._strip(_plain(i))) for i in found], token

    def attach_upload(self, import_id: str, key: str, version: str | None) -> bool:
        """The awaited upload of a `waiting` job arrived: queue the job. False when the job is not
        waiting for this key (gone, or already given an upload)."""
        try:
            self.table.update_item(
                Key=self._import_key(import_id),
                UpdateExpression="SET #status = :queued, objectVersion = :version, updatedAt = :now REMOVE expiresAt",
                ConditionExpression="#status = :waiting AND objectKey = :key",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":queued": "queued",
                    ":waiting": "waiting",
                    ":version": version or "",
                    ":key": key,
                    ":now": utcnow().isoformat(),
                },
            )
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return False
            raise
        return True

    def add_later_import(self, import_id: str, later_id: str) -> bool:
        """List `later_id` (the import of a later PUT of the same upload URL) on the ticket's import,
        once. False when the import is gone or lists it already."""
        try:
            self.table.update_item(
                Key=self._import_key(import_id),
                UpdateExpression="SET laterImports = list_append(if_not_exists(laterImports, :none), :later), "
                "updatedAt = :now",
                ConditionExpression="attribute_exists(pk) AND NOT contains(laterImports, :id)",
                ExpressionAttributeValues={
                    ":none": [],
                    ":later": [later_id],
                    ":id": later_id,
                    ":now": utcnow().isoformat(),
                },
            )
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return False
            raise
        return True

    def update_import(
        self,
        import_id: str,
        changes: Mapping[str, Any],
        *,
        only_from: tuple[str, ...] | None = None,
        touch: bool = True,
    ) -> ImportJob | None:
        """Set attributes (camelCase; None removes one) on a job, only while its status is one of
        `only_from` when given. Returns the job as it is now, or None when the condition failed.
        `updatedAt` is the job's progress (the stalled-import check reads it): a note about the job
        that is no progress passes `touch=False`. A status that ends the job takes it out of gsi2."""
        names: dict[str, str] = {}
        values: dict[str, Any] = {":now": utcnow().isoformat()} if touch else {}
        if changes.get("status") in FINAL_IMPORT_STATUSES:
            changes = {**changes, "gsi2pk": None, "gsi2sk": None}
        kwargs: dict[str, Any] = {
            "Key": self._import_key(import_id),
            "UpdateExpression": update_expression(changes, names, values, ["updatedAt = :now"] if touch else [], []),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ReturnValues": "ALL_NEW",
        }
        condition = "attribute_exists(pk)"
        if only_from:
            names["#status"] = "status"
            allowed = ", ".join(f":from{i}" for i in range(len(only_from)))
            condition += f" AND #status IN ({allowed})"
            values.update({f":from{i}": s for i, s in enumerate(only_from)})
        kwargs["ConditionExpression"] = condition
        try:
            answer = self.table.update_item(**kwargs)
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return None
            raise
        return ImportJob.model_validate(self._strip(_plain(answer["Attributes"])))

    # ------------------------------------------------------------ chunks
    def chunk_marker(self, import_id: str, chunk: int, **attrs: Any) -> dict[str, Any]:
        """The chunk item the planner puts (once: see reserve_numbers' `marker`)."""
        return {"pk": f"IMPORT#{import_id}", "sk": chunk_sk(chunk), "type": "import-chunk", "state": "planned", **attrs}

    def put_chunk(self, import_id: str, chunk: int, **attrs: Any) -> bool:
        return self._put_new(_dynamo(self.chunk_marker(import_id, chunk, **attrs)))

    def get_chunk(self, import_id: str, chunk: int) -> dict[str, Any] | None:
        return self._get(f"IMPORT#{import_id}", chunk_sk(chunk), consistent=True)

    def list_chunks(self, import_id: str) -> list[dict[str, Any]]:
        """Every chunk item of an import, in chunk order."""
        return self._query_all(
            {
                "KeyConditionExpression": Key("pk").eq(f"IMPORT#{import_id}") & Key("sk").begins_with("CHUNK#"),
                "ConsistentRead": True,
            }
        )

    def lease_chunk(self, import_id: str, chunk: int, seconds: int) -> str:
        """Take the chunk for `seconds` so a duplicate delivery does not work it at the same time.
        Returns "leased", "done" (finished before), "busy" (another worker holds it) or "missing"."""
        now = utcnow()
        try:
            self.table.update_item(
                Key={"pk": f"IMPORT#{import_id}", "sk": chunk_sk(chunk)},
                UpdateExpression="SET leaseUntil = :until",
                ConditionExpression="#state = :planned AND (attribute_not_exists(leaseUntil) OR leaseUntil < :now)",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={
                    ":planned": "planned",
                    ":now": now.isoformat(),
                    ":until": (now + timedelta(seconds=seconds)).isoformat(),
                },
            )
        except ClientError as exc:
            if not _is_conditional_failure(exc):
                raise
            item = self.get_chunk(import_id, chunk)
            if item is None:
                return "missing"
            return "done" if item.get("state") == "done" else "busy"
        return "leased"

    def release_chunk(self, import_id: str, chunk: int, *, error: str | None = None) -> None:
        """Give the lease up early (the worker failed and the message will come again); `error` is
        kept on the chunk as `lastError` (what its DLQ record then says)."""
        values: dict[str, Any] = {":planned": "planned"}
        expression = "REMOVE leaseUntil"
        if error:
            values[":error"] = error
            expression = "SET lastError = :error " + expression
        try:
            self.table.update_item(
                Key={"pk": f"IMPORT#{import_id}", "sk": chunk_sk(chunk)},
                UpdateExpression=expression,
                ConditionExpression="#state = :planned",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if not _is_conditional_failure(exc):
                raise

    def finish_chunk(
        self,
        import_id: str,
        chunk: int,
        *,
        job_counts: Mapping[str, int],
        reasons: Mapping[str, int],
        task_id: str,
        task_counts: Mapping[str, int],
        extra: list[dict[str, Any]] | None = None,
    ) -> bool:
        """Mark a chunk done and add its counts to the job and the task, all or nothing; False
        when the chunk was done already (its counts were added then)."""
        now = utcnow().isoformat()
        counters = {k: v for k, v in job_counts.items() if v} | {"chunksDone": 1}
        names = {f"#c{i}": k for i, k in enumerate(counters)} | {f"#r{i}": k for i, k in enumerate(reasons)}
        adds = [f"#c{i} :c{i}" for i in range(len(counters))] + [f"reasons.#r{i} :r{i}" for i in range(len(reasons))]
        values: dict[str, Any] = {f":c{i}": v for i, v in enumerate(counters.values())}
        values |= {f":r{i}": v for i, v in enumerate(reasons.values())}
        values[":now"] = now
        items: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self.table_name,
                    "Key": {"pk": f"IMPORT#{import_id}", "sk": chunk_sk(chunk)},
                    "UpdateExpression": "SET #state = :done, doneAt = :now REMOVE leaseUntil",
                    "ConditionExpression": "#state = :planned",
                    "ExpressionAttributeNames": {"#state": "state"},
                    "ExpressionAttributeValues": {":done": "done", ":planned": "planned", ":now": now},
                }
            },
            {
                "Update": {
                    "TableName": self.table_name,
                    "Key": self._import_key(import_id),
                    "UpdateExpression": "SET updatedAt = :now ADD " + ", ".join(adds),
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": values,
                }
            },
        ]
        counts = task_counts_update(self.table_name, task_id, task_counts)
        if counts is not None:
            items.append({"Update": counts})
        items.extend(extra or [])
        try:
            self.table.meta.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            reasons_ = exc.response.get("CancellationReasons") or []
            if reasons_ and reasons_[0].get("Code") == "ConditionalCheckFailed":
                return False
            raise
        return True
