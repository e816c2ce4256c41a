"""Lambda authorizer of the HTTP API (payload 2.0, simple responses).

A missing header never reaches this function (API Gateway answers 401 itself); a wrong token
raises "Unauthorized", which API Gateway also turns into 401.

The event and the answer are plain dicts: Powertools' data classes (importing one loads the
classes of every event source, ~15 ms of a cold start) would only wrap two lookups here."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from outcall.observability import logger
from outcall.store import default_store
from outcall.tokens import authenticate


class Unauthorized(Exception):
    def __init__(self) -> None:
        super().__init__("Unauthorized")


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    headers = {str(name).lower(): value for name, value in event["headers"].items()}  # case-insensitive names
    token = authenticate(default_store(), headers.get("authorization"))
    if token is None:
        logger.info("token refused", extra={"route": event["routeKey"]})
        raise Unauthorized()
    return {"isAuthorized": True, "context": {"tokenName": token.name}}
