"""What a handler module loads when Lambda imports it (bench/webhooks.py measures how long that
takes): heavy modules a handler only needs for some requests stay out until those requests come."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from outcall.observability import tracer

ROOT = Path(__file__).resolve().parents[2]
EVERYWHERE = (
    "aws_xray_sdk.core",  # tracing is off here: the X-Ray SDK builds a botocore client when imported
    "aws_lambda_powertools.event_handler.openapi.models",  # only the merged OpenAPI document needs them
    "aws_lambda_powertools.utilities.idempotency",  # only keyed creates
    "requests",  # provider modules load when a provider is first used
    "openpyxl",
)
NOT_LOADED = {
    "authorizer_handler": (
        "aws_lambda_powertools.event_handler",
        "aws_lambda_powertools.utilities.data_classes",
        "phonenumbers",
        "argparse",
    ),
    "task_control_handler": ("phonenumbers", "aws_lambda_powertools.utilities.batch"),
    "conference_dialing_handler": ("phonenumbers", "aws_lambda_powertools.utilities.batch"),
    "webhook_intake_handler": (
        "phonenumbers",
        "outcall.conferences",
        "aws_lambda_powertools.utilities.batch",
        "aws_lambda_powertools.utilities.parser",
    ),
}


@pytest.fixture(scope="module")
def loaded() -> dict[str, set[str]]:
    """The modules each handler's import loads, each in a fresh interpreter (all at once)."""
    env = {**os.environ, "POWERTOOLS_TRACE_DISABLED": "true"}
    runs = {}
    for module in NOT_LOADED:
        path = [str(ROOT / "layers" / "outcall"), str(ROOT / "functions" / module.removesuffix("_handler"))]
        code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
        runs[module] = subprocess.Popen(
            [sys.executable, "-c", code],
            env={**env, "PYTHONPATH": os.pathsep.join(path)},
            stdout=subprocess.PIPE,
            text=True,
        )
    out = {module: run.communicate(timeout=120)[0] for module, run in runs.items()}
    assert all(run.returncode == 0 for run in runs.values())
    return {module: set(json.loads(text)) for module, text in out.items()}


@pytest.mark.parametrize("module", sorted(NOT_LOADED))
def test_a_handler_import_leaves_out_what_it_does_not_need_yet(loaded: dict[str, set[str]], module: str) -> None:
    assert module in loaded[module]
    assert sorted(loaded[module].intersection(EVERYWHERE + NOT_LOADED[module])) == []


def test_a_disabled_tracer_still_runs_what_it_wraps() -> None:
    assert tracer.disabled

    @tracer.capture_lambda_handler
    def handler(event: dict[str, int], context: object) -> dict[str, int]:
        return {"n": event["n"] + 1}

    @tracer.capture_method
    def fails() -> None:
        raise ValueError("boom")

    @tracer.capture_method
    async def later(n: int) -> int:
        return n * 2

    assert handler({"n": 1}, None) == {"n": 2}
    with pytest.raises(ValueError, match="boom"):
        fails()
    assert asyncio.run(later(21)) == 42
