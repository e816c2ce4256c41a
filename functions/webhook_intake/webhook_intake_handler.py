"""webhook_intake: provider pushes, the result processor (SQS) and the result pollers (schedule)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from outcall.api import configure
from outcall.observability import logger, metrics, tracer

app = APIGatewayHttpResolver(enable_validation=True)
configure(app)


def on_schedule(event: dict[str, Any]) -> dict[str, Any]:
    """The rate schedule of template.yaml: {"kind": "poll-results"}."""
    logger.info("poll schedule fired", extra={"kind": event.get("kind")})
    return {"polled": 0}


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "requestContext" in event:
        return app.resolve(event, context)
    return on_schedule(event)
