"""layers/outcall/requirements.lock, what the layer ships: current with requirements.txt, at the
versions the tests run, and without the SDK the Lambda runtime provides. Checked against the
installed test environment, so no index is needed."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

import lock
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def _installed() -> list[dict[str, Any]]:
    """The test environment's distributions, shaped like the `install` entries of pip's report."""
    return [
        {"metadata": {"name": d.metadata["Name"], "version": d.version, "requires_dist": d.requires or []}}
        for d in metadata.distributions()
    ]


def test_lock_pins_every_runtime_dependency_of_the_layer() -> None:
    assert lock.read_lock() == lock.needed(_installed())


def test_lock_versions_are_the_ones_the_tests_run() -> None:
    dev = lock.pins(ROOT / "requirements-dev.txt")
    locked = lock.read_lock()
    assert {name: dev.get(name) for name in locked} == locked
    for name, version in locked.items():
        assert metadata.version(name) == version, name


def test_lock_leaves_the_sdk_to_the_lambda_runtime() -> None:
    locked = lock.read_lock()
    assert not {canonicalize_name(name) for name in lock.RUNTIME_PROVIDED} & set(locked)
    # the tests run the SDK versions requirements.txt / requirements-dev.txt pin, stated once there
    pinned = lock.pins(ROOT / "requirements-dev.txt")
    assert {"boto3", "botocore"} <= set(pinned)


def test_every_direct_requirement_is_in_the_lock() -> None:
    direct = {
        canonicalize_name(line.split("[")[0].split("==")[0]) for line in lock._requirement_lines(lock.REQUIREMENTS)
    }
    assert direct <= set(lock.read_lock())
