"""`make demo` against a local stack of its own: it tells its story, marks every refusal it asked for as
expected (with the reason), shows no Python reprs, and exits 0. Pollers fire every few seconds here
(OUTCALL_RATE_MAX_SECONDS), so the demo's wait for call results is short."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest

from tests.e2e.conftest import ROOT, LocalStack, start_stack, stop_stack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    proc, local = start_stack(tmp_path_factory.mktemp("demo") / "stack.log", OUTCALL_RATE_MAX_SECONDS="5")
    try:
        yield local
    finally:
        stop_stack(proc)


def test_the_demo_reads_as_a_story_and_exits_0(stack: LocalStack) -> None:
    env = {
        **os.environ,
        "OUTCALL_PORT": str(urlparse(stack.url).port),
        "OUTCALL_AWS_PORT": str(urlparse(stack.aws_url).port),
        "OUTCALL_DEV_TOKEN": stack.token,
        "OUTCALL_DEMO_RESULTS_WAIT": "45",
        "PYTHONPATH": str(ROOT / "layers" / "outcall"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "local.demo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=110
    )
    out = done.stdout
    assert done.returncode == 0, out[-5000:] + done.stderr[-3000:]
    assert "UNEXPECTED" not in out and "Traceback" not in done.stderr
    assert not re.search(r"\b(None|False|True)\b|\{'|\['", out), out  # no Python reprs
    chapters = [line for line in out.splitlines() if line.startswith("== ")]
    assert len(chapters) == 7, chapters
    # every 4xx the demo asked for says it was expected, and why
    refusals = [line for line in out.splitlines() if re.search(r"-> 4\d\d\b", line)]
    assert len(refusals) == 11, refusals
    assert all(re.search(r"-> 4\d\d, as expected: \w", line) for line in refusals), refusals
    assert "airudder: stop the completed task -> 409, as expected: a completed task cannot be stopped" in out
    assert "read an import without a token -> 401, as expected" in out
    # every provider's results came in within the wait, airudder's too
    for provider in ("xswitch", "aliyun", "nxcloud", "airudder"):
        assert re.search(rf"{provider}: read the task -> 200: completed; calls: (\+\d+ [a-z-]+(, )?){{3}};", out), out
    assert "Host (host) -> dialled" in out and "Guest (guest) -> dialled" in out
    assert "every answer was the one the story expected" in out
