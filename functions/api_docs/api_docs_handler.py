"""GET /health, GET /openapi.json and the Swagger UI at /swagger.

The OpenAPI document is merged by Powertools from the resolvers of every HTTP function
(their `*_handler.py` files, which this function's package carries), so it always matches
the real route definitions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from outcall.api import API_DESCRIPTION, API_TITLE, API_VERSION, configure, security_schemes
from outcall.observability import logger

FUNCTIONS_DIR = Path(__file__).resolve().parent.parent

app = APIGatewayHttpResolver(enable_validation=True)
configure(app)
app.configure_openapi_merge(
    path=str(FUNCTIONS_DIR),
    pattern="*_handler.py",
    recursive=True,
    exclude=["**/api_docs/**", "**/authorizer/**"],
    title=API_TITLE,
    version=API_VERSION,
    description=API_DESCRIPTION,
    security_schemes=security_schemes(),
    security=[{"bearer": []}],
    on_conflict="error",
)
app.enable_swagger(path="/swagger", title=API_TITLE, version=API_VERSION)


@app.get("/health", include_in_schema=False)
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/openapi.json", include_in_schema=False)
def openapi():
    return Response(200, content_types.APPLICATION_JSON, app.get_openapi_merge_json_schema())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
