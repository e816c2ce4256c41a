"""Lambda authorizer of the HTTP API (payload 2.0, simple responses).

A missing header never reaches this function (API Gateway answers 401 itself); a wrong token
raises "Unauthorized", which API Gateway also turns into 401."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes import event_source
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerEventV2,
    APIGatewayAuthorizerResponseV2,
)
from aws_lambda_powertools.utilities.typing import LambdaContext
from outcall.observability import logger
from outcall.store import default_store
from outcall.tokens import authenticate


class Unauthorized(Exception):
    def __init__(self) -> None:
        super().__init__("Unauthorized")


@logger.inject_lambda_context
@event_source(data_class=APIGatewayAuthorizerEventV2)
def lambda_handler(event: APIGatewayAuthorizerEventV2, context: LambdaContext) -> dict[str, Any]:
    header = event.headers.get("authorization") or event.headers.get("Authorization")
    token = authenticate(default_store(), header)
    if token is None:
        logger.info("token refused", extra={"route": event.route_key})
        raise Unauthorized()
    return APIGatewayAuthorizerResponseV2(authorize=True, context={"tokenName": token.name}).asdict()
