"""Contact imports: an S3 upload (or a JSON body) becomes an import job, and the job is worked
through in chunks by the SQS worker."""

from __future__ import annotations

import hashlib
from urllib.parse import unquote_plus

from outcall.errors import NotFound, Unprocessable
from outcall.models import ImportJob, Model
from outcall.observability import logger
from outcall.store import Store, utcnow

IMPORT_PREFIX = "imports/"


class ChunkMessage(Model):
    """What the chunk worker receives: which import, and which part of it."""

    import_id: str
    chunk: int = 0


def object_key(raw_key: str) -> str:
    """S3 event keys are URL-encoded (spaces as '+', non-ASCII as %XX)."""
    return unquote_plus(raw_key)


def task_id_of(key: str) -> str:
    """`imports/{taskId}/{file}` -> taskId."""
    parts = key.split("/")
    if len(parts) < 3 or parts[0] + "/" != IMPORT_PREFIX or not parts[1] or not parts[-1]:
        raise Unprocessable(f"object key {key!r} is not imports/<taskId>/<file>")
    return parts[1]


def import_id_for(bucket: str, key: str, version: str | None) -> str:
    """Deterministic per object version: the same S3 event delivered twice names the same import."""
    digest = hashlib.sha256(f"{bucket}\n{key}\n{version or ''}".encode()).hexdigest()
    return f"imp_{digest[:24]}"


def register_upload(store: Store, bucket: str, raw_key: str, version: str | None) -> tuple[ImportJob, bool]:
    """Create the import job of an uploaded object; returns (job, created). `created` is False for
    a redelivered event, whose job already exists: the caller must not queue it again."""
    key = object_key(raw_key)
    now = utcnow()
    job = ImportJob(
        import_id=import_id_for(bucket, key, version),
        task_id=task_id_of(key),
        source="s3",
        object_key=key,
        created_at=now,
        updated_at=now,
    )
    created = store.create_import(job)
    if not created:
        logger.info("upload already registered", extra={"importId": job.import_id})
        existing = store.get_import(job.import_id)
        return (existing or job), False
    logger.info("upload registered", extra={"importId": job.import_id, "taskId": job.task_id})
    return job, True


def get_import(store: Store, import_id: str) -> ImportJob:
    job = store.get_import(import_id)
    if job is None:
        raise NotFound(f"import {import_id} not found")
    return job
