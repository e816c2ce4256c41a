"""Import job items."""

from __future__ import annotations

from outcall.models import ImportJob
from outcall.store.base import StoreBase


class ImportItems(StoreBase):
    # ------------------------------------------------------------ import jobs
    def create_import(self, job: ImportJob) -> bool:
        """Store a new import job; False when one with this id exists (a redelivered S3 event)."""
        item = {
            "pk": f"IMPORT#{job.import_id}",
            "sk": "IMPORT",
            "type": "import",
            "gsi1pk": f"TASK#{job.task_id}",
            "gsi1sk": f"IMPORT#{job.created_at.isoformat()}",
            **job.model_dump(mode="json", by_alias=True, exclude_none=True),
        }
        return self._put_new(item)

    def get_import(self, import_id: str) -> ImportJob | None:
        item = self._get(f"IMPORT#{import_id}", "IMPORT", consistent=True)
        return ImportJob.model_validate(self._strip(item)) if item else None
