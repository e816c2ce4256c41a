"""What the operator commands (`python -m outcall.tokens`, `python -m outcall.redrive`) share: the
AWS region (AWS_REGION or AWS_DEFAULT_REGION), the deployed stack (STACK_NAME, else the stack_name
samconfig.toml gives the environment ENV, default `default`) and what it holds, and one-line
errors for the operator instead of tracebacks. Only these command lines import this module."""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
)


class CommandError(Exception):
    """A one-line message for the operator: what is wrong and what to set."""


def use_region() -> str | None:
    """The region the command works in. boto3 reads AWS_DEFAULT_REGION only; the Lambda runtime and
    the AWS CLI docs name AWS_REGION, so either is taken (AWS_REGION wins when both are set)."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        os.environ["AWS_DEFAULT_REGION"] = region
    return region or boto3.session.Session().region_name


def samconfig(path: Path | None = None) -> dict[str, Any]:
    """samconfig.toml of the working directory (or SAMCONFIG), empty when there is none."""
    file = path or Path(os.environ.get("SAMCONFIG") or "samconfig.toml")
    if not file.is_file():
        return {}
    try:
        with file.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise CommandError(f"{file} is not valid TOML: {exc}") from exc


def _sam_setting(config: dict[str, Any], env: str, key: str) -> str | None:
    section = config.get(env) or {}
    for command in ("deploy", "global"):  # sam deploy's own setting wins over the global one
        value = ((section.get(command) or {}).get("parameters") or {}).get(key)
        if value:
            return str(value)
    return None


def stack_name() -> str:
    """STACK_NAME, else samconfig.toml's stack_name for ENV (default `default`)."""
    if os.environ.get("STACK_NAME"):
        return os.environ["STACK_NAME"]
    env = os.environ.get("ENV") or "default"
    name = _sam_setting(samconfig(), env, "stack_name")
    if not name:
        raise CommandError(
            f"no stack name: set STACK_NAME, or run from the directory whose samconfig.toml names "
            f"stack_name for ENV={env}"
        )
    return name


def stack_region() -> str | None:
    """The region to look the stack up in: the environment's, else samconfig.toml's for ENV."""
    region = use_region()
    if region:
        return region
    region = _sam_setting(samconfig(), os.environ.get("ENV") or "default", "region")
    if region:
        os.environ["AWS_DEFAULT_REGION"] = region
    return region


def stack_resource(logical_id: str) -> str:
    """The physical id of the resource `logical_id` (as template.yaml names it) of the deployed
    stack: for a queue, its URL. Read with CloudFormation's DescribeStackResource."""
    name = stack_name()
    region = stack_region()
    cfn = boto3.client("cloudformation")
    try:
        cfn.describe_stacks(StackName=name)
    except ClientError as exc:
        if "does not exist" not in exc.response.get("Error", {}).get("Message", ""):
            raise
        raise CommandError(
            f"stack {name} not found in region {region}: set STACK_NAME (or ENV for samconfig.toml) "
            "and AWS_REGION to the deployed stack's"
        ) from exc
    try:
        found = cfn.describe_stack_resource(StackName=name, LogicalResourceId=logical_id)
    except ClientError as exc:
        if "does not exist" not in exc.response.get("Error", {}).get("Message", ""):
            raise
        raise CommandError(f"stack {name} has no resource {logical_id}") from exc
    return str(found["StackResourceDetail"]["PhysicalResourceId"])


def _one_line(exc: BaseException | str) -> str:
    return " ".join(str(exc).split())


def run(prog: str, main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run a command's main: its exit code, or 2 with one line on stderr for what the operator
    can fix (missing settings, no credentials, an unreachable endpoint, a refused call)."""
    try:
        return main(argv)
    except CommandError as exc:
        message = str(exc)
    except NoRegionError:
        message = "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION, or a region in the AWS_PROFILE's config)"
    except NoCredentialsError:
        message = "no AWS credentials: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    except EndpointConnectionError as exc:
        message = f"cannot reach {exc.kwargs.get('endpoint_url', 'the AWS endpoint')}"
        if os.environ.get("AWS_ENDPOINT_URL"):
            message += f" (AWS_ENDPOINT_URL={os.environ['AWS_ENDPOINT_URL']}: is the local stack running?)"
    except ClientError as exc:
        error = exc.response.get("Error", {})
        message = f"{exc.operation_name} refused: {error.get('Code', '?')}: {_one_line(error.get('Message', ''))}"
    except BotoCoreError as exc:
        message = _one_line(exc)
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2
