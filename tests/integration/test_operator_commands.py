"""The operator commands as an operator runs them: `make tokens ARGS=...` and `make redrive` against a
moto server (a subprocess cannot see an in-process mock), with only the variables the README names,
and the one-line errors when one is missing or wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from local.template import load

ROOT = Path(__file__).resolve().parents[2]
REGION = "eu-west-1"  # not the conftest's us-east-1: proves the region comes from AWS_REGION


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def _client(moto_url: str, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=moto_url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _operator_env(moto_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    """An operator's shell: AWS_REGION (not AWS_DEFAULT_REGION), credentials, the endpoint, no
    AWS config file, none of the functions' variables."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "PYTHON"))
        and k not in {"TABLE_NAME", "RESULTS_QUEUE_URL", "IMPORT_QUEUE_URL", "STACK_NAME", "ENV"}
    }
    empty = tmp_path / "aws-config"
    empty.write_text("", encoding="utf-8")
    env.update(
        {
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_ENDPOINT_URL": moto_url,
            "AWS_CONFIG_FILE": str(empty),
            "AWS_SHARED_CREDENTIALS_FILE": str(empty),
        }
    )
    env.update(extra)
    return env


def _make(target: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    # -o: the shared virtualenv is taken as installed (the test must not reinstall it)
    return subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.installed", target, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _module(module: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env={**env, "PYTHONPATH": "layers/outcall"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("make: ***")]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _token_table(moto_url: str, name: str) -> str:
    table = next(iter(v for v in load()["Resources"].values() if v["Type"] == "AWS::DynamoDB::Table"))
    props = table["Properties"]
    _client(moto_url, "dynamodb").create_table(
        TableName=name,
        AttributeDefinitions=props["AttributeDefinitions"],
        KeySchema=props["KeySchema"],
        GlobalSecondaryIndexes=props["GlobalSecondaryIndexes"],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


# ------------------------------------------------------------------ tokens
def test_make_tokens_create_list_revoke_with_aws_region(moto_url: str, tmp_path: Path) -> None:
    table = _token_table(moto_url, "outcall-tokens-cli")
    env = _operator_env(moto_url, tmp_path, TABLE_NAME=table)

    created = _make("tokens", env, "ARGS=create --name ci")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("oc_") and len(token) > 40

    listed = _make("tokens", env, "ARGS=list")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("\t") for line in listed.stdout.splitlines() if "\t" in line]
    assert [row[0] for row in rows] == ["ci"]
    stored = _client(moto_url, "dynamodb").scan(TableName=table)["Items"]
    assert rows[0][1] == stored[0]["pk"]["S"].removeprefix("TOKEN#")[:12]
    assert token not in json.dumps(stored)  # only the hash is kept

    revoked = _make("tokens", env, "ARGS=revoke --name ci")
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked 1 token(s)" in revoked.stdout
    assert _client(moto_url, "dynamodb").scan(TableName=table)["Items"] == []

    again = _make("tokens", env, "ARGS=revoke --name ci")
    assert again.returncode != 0 and "Error 1" in again.stderr  # the command's 1: nothing revoked
    assert "revoked 0 token(s)" in again.stdout


def test_make_tokens_without_table_name_says_what_to_set(moto_url: str, tmp_path: Path) -> None:
    result = _make("tokens", _operator_env(moto_url, tmp_path), "ARGS=list")
    line = _assert_one_line_error(result, "TABLE_NAME is not set", "describe-stacks", "--stack-name outcall")
    assert "TableName" in line


def test_tokens_names_the_stack_of_env_in_its_hint(moto_url: str, tmp_path: Path) -> None:
    result = _module("outcall.tokens", _operator_env(moto_url, tmp_path, ENV="prod"), "list")
    assert result.returncode == 2
    _assert_one_line_error(result, "--stack-name outcall-prod")


def test_tokens_on_a_table_that_is_not_there(moto_url: str, tmp_path: Path) -> None:
    result = _module("outcall.tokens", _operator_env(moto_url, tmp_path, TABLE_NAME="no-such-table"), "list")
    assert result.returncode == 2
    _assert_one_line_error(result, "table no-such-table not found in region eu-west-1")


def test_tokens_without_any_region(moto_url: str, tmp_path: Path) -> None:
    env = _operator_env(moto_url, tmp_path, TABLE_NAME="t")
    del env["AWS_REGION"]
    result = _module("outcall.tokens", env, "list")
    assert result.returncode == 2
    _assert_one_line_error(result, "no AWS region", "AWS_REGION")


def test_tokens_without_credentials(moto_url: str, tmp_path: Path) -> None:
    env = _operator_env(moto_url, tmp_path, TABLE_NAME="t")
    del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    result = _module("outcall.tokens", env, "list")
    assert result.returncode == 2
    _assert_one_line_error(result, "no AWS credentials", "AWS_PROFILE")


def test_tokens_against_an_endpoint_that_is_down(tmp_path: Path) -> None:
    env = _operator_env("http://127.0.0.1:9", tmp_path, TABLE_NAME="t", AWS_MAX_ATTEMPTS="1")
    result = _module("outcall.tokens", env, "list")
    assert result.returncode == 2
    _assert_one_line_error(result, "cannot reach", "AWS_ENDPOINT_URL=http://127.0.0.1:9")


def test_tokens_refuses_a_short_token_in_one_line(moto_url: str, tmp_path: Path) -> None:
    table = _token_table(moto_url, "outcall-tokens-short")
    result = _module(
        "outcall.tokens",
        _operator_env(moto_url, tmp_path, TABLE_NAME=table),
        "create",
        "--name",
        "x",
        "--token",
        "short",
    )
    assert result.returncode == 2
    _assert_one_line_error(result, "at least 16 characters")
    assert _client(moto_url, "dynamodb").scan(TableName=table)["Items"] == []


# ------------------------------------------------------------------ redrive
QUEUE_IDS = ("ImportQueue", "ImportDLQ", "ResultsQueue", "ResultsDLQ")


@pytest.fixture(scope="module")
def stack(moto_url: str) -> dict[str, str]:
    """A CloudFormation stack named as samconfig.toml's default names it, holding template.yaml's
    own queue resources (RedrivePolicy included); the queue URLs by logical id."""
    resources = {k: v for k, v in load()["Resources"].items() if k in QUEUE_IDS}
    for resource in resources.values():  # moto's CloudFormation does not know these two properties
        resource["Properties"].pop("SqsManagedSseEnabled", None)
    cfn = _client(moto_url, "cloudformation")
    cfn.create_stack(StackName="outcall", TemplateBody=json.dumps({"Resources": resources}))
    found = cfn.describe_stack_resources(StackName="outcall")["StackResources"]
    return {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in found}


def _put(moto_url: str, url: str, *bodies: str) -> None:
    sqs = _client(moto_url, "sqs")
    for body in bodies:
        sqs.send_message(QueueUrl=url, MessageBody=body)


def _drain(moto_url: str, url: str) -> list[str]:
    sqs = _client(moto_url, "sqs")
    bodies: list[str] = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for message in batch:
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return sorted(bodies)


def test_make_redrive_finds_the_queues_of_the_stack(moto_url: str, stack: dict[str, str], tmp_path: Path) -> None:
    env = _operator_env(moto_url, tmp_path)  # no queue URL, no STACK_NAME: samconfig.toml names the stack
    _put(moto_url, stack["ResultsDLQ"], '{"pushId": "a"}', '{"pushId": "b"}')

    result = _make("redrive", env, "QUEUE=results")

    assert result.returncode == 0, result.stderr
    moved = result.stdout.strip().splitlines()[-1]
    assert moved.startswith("moved 2 message(s) from ")
    assert moved.split()[-3].endswith(stack["ResultsDLQ"].rsplit("/", 1)[1])
    assert moved.split()[-1] == stack["ResultsQueue"]
    assert _drain(moto_url, stack["ResultsQueue"]) == ['{"pushId": "a"}', '{"pushId": "b"}']
    assert _drain(moto_url, stack["ResultsDLQ"]) == []


def test_redrive_imports_with_max(moto_url: str, stack: dict[str, str], tmp_path: Path) -> None:
    env = _operator_env(moto_url, tmp_path, STACK_NAME="outcall")
    _put(moto_url, stack["ImportDLQ"], "1", "2", "3")

    result = _module("outcall.redrive", env, "imports", "--max", "2")

    assert result.returncode == 0, result.stderr
    assert "moved 2 message(s)" in result.stdout
    assert len(_drain(moto_url, stack["ImportQueue"])) == 2
    assert len(_drain(moto_url, stack["ImportDLQ"])) == 1


def test_redrive_takes_the_queue_url_from_the_environment(moto_url: str, stack: dict[str, str], tmp_path: Path) -> None:
    env = _operator_env(moto_url, tmp_path, RESULTS_QUEUE_URL=stack["ResultsQueue"], STACK_NAME="not-deployed")
    _put(moto_url, stack["ResultsDLQ"], "x")
    result = _module("outcall.redrive", env, "results")
    assert result.returncode == 0, result.stderr
    assert _drain(moto_url, stack["ResultsQueue"]) == ["x"]


def test_make_redrive_for_a_stack_that_is_not_deployed(moto_url: str, stack: dict[str, str], tmp_path: Path) -> None:
    result = _make("redrive", _operator_env(moto_url, tmp_path, ENV="prod"), "QUEUE=results")
    _assert_one_line_error(
        result, "no results queue URL", "RESULTS_QUEUE_URL", "stack outcall-prod not found in region eu-west-1"
    )


def test_redrive_without_samconfig_or_stack_name(moto_url: str, tmp_path: Path) -> None:
    env = _operator_env(moto_url, tmp_path, SAMCONFIG=str(tmp_path / "none.toml"))
    result = _module("outcall.redrive", env, "imports")
    assert result.returncode == 2
    _assert_one_line_error(result, "IMPORT_QUEUE_URL", "set STACK_NAME")


def test_redrive_of_a_queue_without_a_dlq(moto_url: str, tmp_path: Path) -> None:
    url = _client(moto_url, "sqs").create_queue(QueueName="plain")["QueueUrl"]
    result = _module("outcall.redrive", _operator_env(moto_url, tmp_path), "results", "--queue-url", url)
    assert result.returncode == 2
    _assert_one_line_error(result, "has no dead-letter queue")


def test_redrive_refuses_a_max_below_one(moto_url: str, tmp_path: Path) -> None:
    result = _module("outcall.redrive", _operator_env(moto_url, tmp_path), "results", "--max", "0")
    assert result.returncode == 2
    assert "--max must be at least 1" in result.stderr
    assert "Traceback" not in result.stderr
