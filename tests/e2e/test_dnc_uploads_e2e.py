"""A do-not-call list uploaded through the local stack: the ticket from task_control, a PUT of a CSV to
the presigned URL as curl sends it, the S3 trigger of dnc-imports/ running contact_import, and the
listed numbers refused by the next import of the task."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.slow


def put_like_curl(url: str, path: Path) -> int:
    """`curl -T file URL`: a PUT of the file's bytes with no Content-Type (requests when curl is absent)."""
    curl = shutil.which("curl")
    if curl is None:
        return requests.put(url, data=path.read_bytes(), headers={"Content-Type": ""}, timeout=30).status_code
    out = subprocess.run(
        [curl, "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T", str(path), url],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return int(out.stdout)


def test_a_csv_put_with_curl_lists_its_numbers_and_the_next_import_refuses_them(
    local_stack: Any, tmp_path: Path
) -> None:
    body = {"name": "e2e dnc upload", "provider": "nxcloud", "type": "robot"}
    task_id = local_stack.authed("POST", "/tasks", json=body).json()["taskId"]
    first, second = (f"+861390{uuid.uuid4().int % 10**7:07d}" for _ in range(2))
    ticket = local_stack.authed(
        "POST",
        f"/tasks/{task_id}/dnc/uploads",
        json={"filename": "opt-outs.csv", "reason": "asked to stop", "defaultRegion": "CN"},
    )
    assert ticket.status_code == 201, ticket.text
    ticket_body = ticket.json()
    assert ticket_body["method"] == "PUT" and ticket_body["objectKey"].startswith("dnc-imports/")

    csv_file = tmp_path / "opt-outs.csv"
    csv_file.write_bytes(f"手机,备注\r\n{first[3:]},x\r\n{second},\r\n{first},again\r\n12,bad\r\n".encode())
    assert put_like_curl(ticket_body["uploadUrl"], csv_file) == 200

    path = f"/tasks/{task_id}/dnc/uploads/{ticket_body['importId']}"

    def finished() -> Any:
        job = local_stack.authed("GET", path).json()
        return job if job["status"] in ("completed", "failed") else None

    job = local_stack.wait_for(finished, timeout=60)
    assert job["status"] == "completed", job
    assert (job["rows"], job["added"], job["alreadyListed"], job["duplicate"], job["invalid"]) == (4, 2, 0, 1, 1)
    assert job["invalidRows"][0]["row"] == 5
    entry = local_stack.authed("GET", f"/tasks/{task_id}/dnc/{first.lstrip('+')}")
    assert entry.status_code == 200 and entry.json()["source"] == "upload" and entry.json()["reason"] == "asked to stop"
    assert local_stack.authed("GET", f"/dnc/{first.lstrip('+')}").status_code == 404  # the task's list only

    contacts = [{"mobile": first}, {"mobile": second}, {"mobile": "13800138000"}]
    answer = local_stack.authed("POST", f"/tasks/{task_id}/contacts", json={"contacts": contacts})
    assert answer.status_code == 200, answer.text
    assert [c["reason"] for c in answer.json()["contacts"]] == ["dnc", "dnc", None]
    assert local_stack.authed("DELETE", f"/tasks/{task_id}").status_code == 204
