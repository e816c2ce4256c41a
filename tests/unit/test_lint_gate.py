"""The lint gate: CI runs `make lint`, the pre-commit hooks run the same checks with the same
tools, and the complexity limit's exceptions are files that really need one."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _lint_recipe() -> list[str]:
    """The commands of the Makefile's lint target, without the $(BIN)/ prefix."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    block = re.search(r"^lint:.*\n((?:\t.*\n)+)", text, re.MULTILINE)
    assert block, "the Makefile has no lint target"
    return [line.strip().removeprefix("$(BIN)/") for line in block.group(1).splitlines()]


def test_ci_runs_make_lint_and_make_test() -> None:
    commands = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert "make lint" in commands
    assert "make test" in commands


def test_pre_commit_hooks_are_the_checks_of_make_lint() -> None:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    hooks = [hook for repo in config["repos"] for hook in repo["hooks"]]
    assert {repo["repo"] for repo in config["repos"]} == {"local"}  # nothing to download: works offline
    entries = []
    for hook in hooks:
        assert hook["entry"].startswith(".venv/bin/"), hook  # the pinned tools of the project's venv
        entries.append(hook["entry"].removeprefix(".venv/bin/").replace(" --force-exclude", ""))
    # make lint checks the whole tree ("."); a hook gets the staged files instead, except mypy,
    # which checks the files pyproject.toml names in both cases
    # checkov runs from its own environment (requirements-checkov.txt) in make lint only
    recipe = [c for c in _lint_recipe() if "checkov" not in c]
    assert entries == [command.removesuffix(" .") for command in recipe]
    mypy = next(hook for hook in hooks if hook["id"] == "mypy")
    assert mypy["pass_filenames"] is False


def test_complexity_limit_is_on_and_every_exception_is_needed() -> None:
    ruff = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["ruff"]["lint"]
    assert "C90" in ruff["select"]
    limit = ruff["mccabe"]["max-complexity"]
    assert limit <= 12
    excepted = sorted(path for path, codes in ruff["per-file-ignores"].items() if "C901" in codes)
    # the same check without the exceptions: each excepted file must still have a function over the limit
    found = subprocess.run(
        [
            str(BIN / "ruff"),
            "check",
            "--isolated",
            "--select",
            "C901",
            "--config",
            f"lint.mccabe.max-complexity={limit}",
            "--output-format",
            "concise",
            *excepted,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    flagged = {line.split(":", 1)[0] for line in found.stdout.splitlines() if "C901" in line}
    stale = [path for path in excepted if path not in flagged]
    assert not stale, f"these files meet the limit now: remove their C901 exception in pyproject.toml: {stale}"
