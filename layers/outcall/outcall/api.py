"""What every HTTP function shares: a Powertools resolver with validation and OpenAPI, and
one error shape for the whole API: `{"code", "message", "requestId"}` (422 adds `errors`)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from pydantic import ValidationError

from outcall.errors import OutcallError
from outcall.limits import read_json
from outcall.observability import logger

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.openapi.models import SecurityScheme

__all__ = ["API_DESCRIPTION", "API_TITLE", "API_VERSION", "configure", "error_body", "read_json", "security_schemes"]

API_TITLE = "outcall"
API_VERSION = "1.0.0"
API_DESCRIPTION = (
    "A serverless hub for outbound calling: call lists, dialing tasks on five providers, "
    "conference pre-meeting dialing and call results."
)


def security_schemes() -> dict[str, SecurityScheme]:
    """The API's security schemes, for the merged OpenAPI document (api_docs)."""
    # imported here: Powertools' OpenAPI models are ~70 ms of pydantic classes no route needs
    from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

    return {"bearer": HTTPBearer(description="Authorization: Bearer <token>")}


def error_body(app: APIGatewayHttpResolver, code: str, message: str, **extra: Any) -> dict[str, Any]:
    request_id = ""
    with contextlib.suppress(AttributeError, KeyError, TypeError):
        request_id = app.current_event.request_context.request_id or ""
    return {"code": code, "message": message, "requestId": request_id, **extra}


LOC_PART_CHARS = 64  # a field path names what the caller sent: a 10 KB key is not echoed whole


def _loc_part(part: Any) -> str:
    text = str(part)
    return text if len(text) <= LOC_PART_CHARS else text[:LOC_PART_CHARS] + "..."


def _validation_errors(errors: Any) -> list[dict[str, Any]]:
    out = []
    for err in errors:
        if err.get("type") == "json_invalid":  # loc is ("body", position): name the body and say why
            reason = str((err.get("ctx") or {}).get("error") or "")[:200]
            message = f"the body is not valid JSON ({reason})" if reason else "the body is not valid JSON"
            out.append({"field": "body", "message": message, "type": "json_invalid"})
            continue
        loc = [_loc_part(p) for p in err.get("loc", ()) if p not in ("body",)]
        out.append({"field": ".".join(loc), "message": err.get("msg", ""), "type": err.get("type", "")})
    return out


def configure(app: APIGatewayHttpResolver) -> APIGatewayHttpResolver:
    """Give a function's resolver the API's error shape. Each handler creates its own
    `APIGatewayHttpResolver(enable_validation=True)` where Powertools' OpenAPI merge finds it."""

    @app.exception_handler(OutcallError)
    def _outcall_error(exc: OutcallError) -> Response:
        extra = {"details": exc.details} if exc.details is not None else {}
        return Response(exc.status, content_types.APPLICATION_JSON, error_body(app, exc.code, exc.message, **extra))

    @app.exception_handler(RequestValidationError)
    def _invalid_request(exc: RequestValidationError) -> Response:
        errors = _validation_errors(exc.errors())
        message = "; ".join(f"{e['field'] or 'body'}: {e['message']}" for e in errors) or "invalid request"
        return Response(422, content_types.APPLICATION_JSON, error_body(app, "ValidationError", message, errors=errors))

    @app.exception_handler(ValidationError)
    def _invalid_model(exc: ValidationError) -> Response:
        errors = _validation_errors(exc.errors())
        message = "; ".join(f"{e['field'] or 'body'}: {e['message']}" for e in errors)
        return Response(422, content_types.APPLICATION_JSON, error_body(app, "ValidationError", message, errors=errors))

    @app.not_found
    def _not_found(exc: NotFoundError) -> Response:
        return Response(404, content_types.APPLICATION_JSON, error_body(app, "NotFound", "no such route"))

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response:
        logger.exception("unhandled error")
        return Response(500, content_types.APPLICATION_JSON, error_body(app, "InternalError", "internal error"))

    return app
