"""/health, /openapi.json and /swagger, generated from the real route definitions."""

from __future__ import annotations

import copy
import json
from typing import Any

from tests.helpers import load_event


def _get(path: str, context: Any) -> dict[str, Any]:
    import api_docs_handler

    event = copy.deepcopy(load_event("api_docs_health"))
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["routeKey"] = event["requestContext"]["routeKey"] = f"GET {path}"
    return api_docs_handler.lambda_handler(event, context)


def test_health(context: Any) -> None:
    answer = _get("/health", context)
    assert answer["statusCode"] == 200 and json.loads(answer["body"]) == {"status": "ok"}


def test_openapi_has_every_route_the_http_functions_define(context: Any) -> None:
    import contact_import_handler

    answer = _get("/openapi.json", context)
    assert answer["statusCode"] == 200
    doc = json.loads(answer["body"])
    assert doc["info"]["title"] == "outcall"
    assert "bearer" in doc["components"]["securitySchemes"]
    defined = {
        (route.method.lower(), route.openapi_path)
        for route in contact_import_handler.app._static_routes + contact_import_handler.app._dynamic_routes
        if route.include_in_schema
    }
    assert defined, "contact_import defines routes"
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert defined <= documented


def test_swagger_ui_is_served_without_a_cdn(context: Any) -> None:
    answer = _get("/swagger", context)
    assert answer["statusCode"] == 200
    assert "SwaggerUIBundle" in answer["body"]
    assert "cdn." not in answer["body"]
