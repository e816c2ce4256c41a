"""The real SAM CLI on template.yaml: `sam validate --lint` and `sam build` (layer included)."""

from __future__ import annotations

import os
import subprocess
import sys
from email.parser import Parser
from pathlib import Path

import pytest
from lock import RUNTIME_PROVIDED, read_lock
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def _sam(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}", "SAM_CLI_TELEMETRY": "0"}
    return subprocess.run(
        [str(BIN / "sam"), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )


def test_sam_validate_lint() -> None:
    result = _sam("validate", "--lint", "--config-file", "samconfig.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def _shipped(python: Path) -> dict[str, str]:
    """name -> version of every distribution in a built layer's python/ folder."""
    found = {}
    for info in python.glob("*.dist-info"):
        meta = Parser().parsestr((info / "METADATA").read_text(encoding="utf-8"), headersonly=True)
        found[canonicalize_name(meta["Name"])] = meta["Version"]
    return found


def test_sam_build_packages_every_function_and_the_locked_layer(tmp_path: Path) -> None:
    build = tmp_path / "build"
    result = _sam("build", "--build-dir", str(build), "--cache-dir", str(tmp_path / "cache"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    python = build / "OutcallLayer" / "python"
    assert (python / "outcall" / "store" / "__init__.py").is_file()
    assert (python / "outcall" / "providers" / "aliyun.py").is_file()
    assert (python / "phonenumbers").is_dir()
    assert not list((python / "outcall").rglob("__pycache__"))
    # the layer ships every package of its lock at the pinned version, and nothing else
    assert _shipped(python) == read_lock()
    for name in RUNTIME_PROVIDED:  # the Lambda runtime's SDK is never shadowed by the layer
        assert not (python / name).exists(), name
        assert not list(python.glob(f"{name}-*.dist-info")), name
    assert (build / "ContactImportFunction" / "contact_import_handler.py").is_file()
    assert (build / "ApiDocsFunction" / "api_docs" / "api_docs_handler.py").is_file()
    assert (build / "ApiDocsFunction" / "task_control" / "task_control_handler.py").is_file()
