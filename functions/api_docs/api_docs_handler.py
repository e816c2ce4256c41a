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
from outcall.api import (
    API_DESCRIPTION,
    API_TITLE,
    API_VERSION,
    OPEN,
    answers,
    configure,
    resolve,
    security_schemes,
)
from outcall.observability import logger

FUNCTIONS_DIR = Path(__file__).resolve().parent.parent

# no request validation: these routes take no input (and so answer no 422)
app = APIGatewayHttpResolver()
configure(app)
app.configure_openapi_merge(
    path=str(FUNCTIONS_DIR),
    pattern="*_handler.py",
    recursive=True,
    exclude=["**/authorizer/**"],  # this file too: its routes below are part of the document
    title=API_TITLE,
    version=API_VERSION,
    description=API_DESCRIPTION,
    security_schemes=security_schemes(),
    security=[{"bearer": []}],
    on_conflict="error",
)
app.enable_swagger(path="/swagger", title=API_TITLE, version=API_VERSION)
for _route in app._static_routes:  # Powertools registers its Swagger UI route out of the document
    if _route.path == "/swagger":
        _route.include_in_schema, _route.tags, _route.security = True, ["docs"], None
        _route.summary, _route.openapi_extensions = "The Swagger UI of this document", OPEN
        _route.responses = answers(200, "The Swagger UI", None, content={"text/html": {"schema": {"type": "string"}}})


@app.get(
    "/health",
    tags=["docs"],
    summary="Is the API up",
    responses=answers(
        200,
        "Up",
        None,
        content={
            content_types.APPLICATION_JSON: {
                "schema": {"type": "object", "properties": {"status": {"type": "string", "enum": ["ok"]}}},
                "examples": {"up": {"value": {"status": "ok"}}},
            }
        },
    ),
    openapi_extensions=OPEN,
)
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get(
    "/openapi.json",
    tags=["docs"],
    summary="This document (OpenAPI 3.1), merged from the route definitions of every function",
    responses=answers(
        200, "The document", None, content={content_types.APPLICATION_JSON: {"schema": {"type": "object"}}}
    ),
    openapi_extensions=OPEN,
)
def openapi() -> Response[str]:
    return Response(200, content_types.APPLICATION_JSON, app.get_openapi_merge_json_schema())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return resolve(app, event, context)
