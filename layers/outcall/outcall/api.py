"""What every HTTP function shares: a Powertools resolver with validation and OpenAPI, and one
error shape for the whole API (the local gateway's own answers included):

    {"code": "NotFound", "message": "no task 't_1'", "requestId": "...", "errors": [{"field", "message"}]}

`errors` lists the fields (or facts) behind the refusal; it is empty when there are none.

Bodies are checked before a route sees them (`resolve`): over the route's limit -> 413, not UTF-8
-> 400, a JSON route sent another media type -> 415; then parsed (`json_body`): not JSON -> 400, a
string holding a NUL character -> 422. The limits per route are in `BODY_LIMITS` and in the OpenAPI
document (`x-maxBodyBytes` and the 413 answer of each operation)."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from pydantic import ConfigDict, Field, ValidationError

from outcall.errors import OutcallError
from outcall.limits import read_json
from outcall.models import IsoDateTime, Model
from outcall.observability import logger

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.openapi.models import SecurityScheme
    from aws_lambda_powertools.utilities.typing import LambdaContext

__all__ = [
    "API_DESCRIPTION",
    "API_TITLE",
    "API_VERSION",
    "IsoDateTime",  # handlers take date-time parameters as this
    "configure",
    "error_body",
    "read_json",
    "security_schemes",
]

API_TITLE = "outcall"
API_VERSION = "1.0.0"
API_DESCRIPTION = (
    "A serverless hub for outbound calling: call lists, dialing tasks on five providers, "
    "conference pre-meeting dialing and call results.\n\n"
    "Every error is `{code, message, requestId, errors: [{field, message}]}`. Bodies are JSON "
    "(`Content-Type: application/json`, UTF-8) except provider pushes; each operation states its "
    "body limit (`x-maxBodyBytes`); API Gateway's own limit is 10 MB."
)

KiB = 1024
MiB = 1024 * KiB
API_GATEWAY_BODY_LIMIT = 10 * MiB  # API Gateway HTTP API refuses larger bodies itself (413)
DEFAULT_BODY_LIMIT = 256 * KiB
# Lambda takes at most 6 MB per synchronous event, so no route may take more than ~5 MiB.
BODY_LIMITS: dict[str, int] = {
    "POST /tasks/{taskId}/contacts": 5 * MiB,  # up to 10,000 contacts
    "POST /events/{eventId}/calls": 5 * MiB,  # up to 10,000 callees
    "POST /webhooks/{provider}": 256 * KiB,
    "POST /webhooks/{provider}/{kind}": 256 * KiB,
}
# Routes whose body is handed over as bytes (provider pushes: form, XML or JSON, signed as sent).
RAW_BODY_ROUTES = frozenset({"POST /webhooks/{provider}", "POST /webhooks/{provider}/{kind}"})

# The security of an operation that needs no token (the document's default is the bearer token).
OPEN: dict[str, Any] = {"security": []}


def body_limit(route_key: str) -> int:
    return BODY_LIMITS.get(route_key, DEFAULT_BODY_LIMIT)


def _template_pattern(route_key: str) -> re.Pattern[str]:
    method, path = route_key.split(" ", 1)
    parts = re.split(r"\{[^}]+\}", path)
    return re.compile(re.escape(method + " ") + "[^/]+".join(re.escape(p) for p in parts) + "$")


_TEMPLATES = [(key, _template_pattern(key)) for key in sorted({*BODY_LIMITS, *RAW_BODY_ROUTES})]


def route_key_of(event: Mapping[str, Any]) -> str:
    """The event's route template (`POST /tasks/{taskId}/contacts`): API Gateway's routeKey, or,
    for an event that names its concrete path, the template that path matches."""
    route_key = str(event.get("routeKey") or "")
    if "{" in route_key or route_key in BODY_LIMITS or route_key in RAW_BODY_ROUTES:
        return route_key
    with contextlib.suppress(AttributeError, KeyError, TypeError):
        concrete = f"{event['requestContext']['http']['method']} {event.get('rawPath') or ''}"
        for key, pattern in _TEMPLATES:
            if pattern.match(concrete):
                return key
    return route_key


def security_schemes() -> dict[str, SecurityScheme]:
    """The API's security schemes, for the merged OpenAPI document (api_docs)."""
    # imported here: Powertools' OpenAPI models are ~70 ms of pydantic classes no route needs
    from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

    return {"bearer": HTTPBearer(description="Authorization: Bearer <token>")}


# ---------------------------------------------------------------- the error shape


class FieldError(Model):
    field: str = Field(description="the failing field (`callList.0.mobile`), or the fact behind the refusal")
    message: str


class ErrorBody(Model):
    """Every error answer of the API."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "code": "ValidationError",
                "message": "name: Field required",
                "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "errors": [{"field": "name", "message": "Field required"}],
            }
        }
    )

    code: str = Field(description="BadRequest, Unauthorized, NotFound, Conflict, TooLarge, ValidationError, ...")
    message: str
    request_id: str = Field(description="quote it when asking about this request")
    errors: list[FieldError] = Field(default_factory=list)


def _request_id_of(event: Mapping[str, Any]) -> str:
    with contextlib.suppress(AttributeError, KeyError, TypeError):
        return str(event["requestContext"]["requestId"] or "")
    return ""


def error_dict(code: str, message: str, request_id: str, errors: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "requestId": request_id, "errors": errors or []}


def error_body(app: APIGatewayHttpResolver, code: str, message: str, errors: Any = None) -> dict[str, Any]:
    request_id = ""
    with contextlib.suppress(AttributeError, KeyError, TypeError):
        request_id = app.current_event.request_context.request_id or ""
    return error_dict(code, message, request_id, field_errors(errors))


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value)
    return json.dumps(value, ensure_ascii=False, default=str)


def field_errors(details: Any) -> list[dict[str, str]]:
    """An error's details as `[{field, message}]`: a list of `{field, message, ...}` keeps its
    entries (other keys join the message); a mapping gives one entry per fact."""
    if details is None:
        return []
    if isinstance(details, Mapping):
        return [{"field": str(k), "message": _text(v)} for k, v in details.items() if v is not None]
    if isinstance(details, list | tuple):
        out = []
        for item in details:
            if isinstance(item, Mapping):
                rest = {k: v for k, v in item.items() if k not in ("field", "message")}
                message = str(item.get("message") or "")
                extra = "; ".join(f"{k}: {_text(v)}" for k, v in rest.items())
                out.append(
                    {"field": str(item.get("field", "")), "message": "; ".join(p for p in (message, extra) if p)}
                )
            else:
                out.append({"field": "", "message": _text(item)})
        return out
    return [{"field": "", "message": _text(details)}]


LOC_PART_CHARS = 64  # a field path names what the caller sent: a 10 KB key is not echoed whole


def _loc_part(part: Any) -> str:
    text = str(part)
    return text if len(text) <= LOC_PART_CHARS else text[:LOC_PART_CHARS] + "..."


def _validation_errors(errors: Any) -> list[dict[str, str]]:
    out = []
    for err in errors:
        if err.get("type") == "json_invalid":  # loc is ("body", position): name the body and say why
            reason = str((err.get("ctx") or {}).get("error") or "")[:200]
            message = f"the body is not valid JSON ({reason})" if reason else "the body is not valid JSON"
            out.append({"field": "body", "message": message})
            continue
        loc = [_loc_part(p) for p in err.get("loc", ()) if p not in ("body",)]
        out.append({"field": ".".join(loc), "message": str(err.get("msg", ""))})
    return out


# ---------------------------------------------------------------- bodies


def _is_json_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("", "application/json") or media.endswith("+json")


def _refusal(status: int, code: str, message: str, event: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": content_types.APPLICATION_JSON},
        "body": json.dumps(error_dict(code, message, _request_id_of(event))),
        "isBase64Encoded": False,
    }


def check_body(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """The answer for a body the route cannot take (None when it can): over its limit (413),
    not UTF-8 (400), or, on a JSON route, of another media type (415)."""
    raw = event.get("body")
    if not raw:
        return None
    route_key = route_key_of(event)
    if event.get("isBase64Encoded"):
        try:
            body = base64.b64decode(str(raw), validate=True)
        except (binascii.Error, ValueError):
            return _refusal(400, "BadRequest", "the body is not valid base64 (isBase64Encoded)", event)
    else:
        body = str(raw).encode("utf-8", "surrogatepass")
    limit = body_limit(route_key)
    if len(body) > limit:
        return _refusal(413, "TooLarge", f"the body is {len(body)} bytes; this route takes at most {limit}", event)
    if route_key in RAW_BODY_ROUTES:
        return None
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    content_type = headers.get("content-type", "")
    if not _is_json_type(content_type):
        message = f"the body is {content_type.split(';')[0]!s}; send JSON with Content-Type: application/json"
        return _refusal(415, "UnsupportedMediaType", message, event)
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        message = f"the body is not UTF-8 ({exc.reason} at byte {exc.start}); send JSON in UTF-8"
        return _refusal(400, "BadRequest", message, event)
    return None


def _nul_paths(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(value, str):
        if "\x00" in value:
            yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                yield (*path, key.replace("\x00", "\\u0000"))
            yield from _nul_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _nul_paths(item, (*path, str(index)))


def parse_json(text: str) -> Any:
    """JSON text to a value (json.JSONDecodeError when it is not JSON): limits.read_json, which keeps a
    number too long for DynamoDB as its text, so the field it is in is the one a 422 names."""
    return read_json(text)


def json_body(text: str) -> Any:
    """The resolvers' JSON body parser: a body that is not JSON is a 400 that says why; a value
    that is not an object, or a string with a NUL character (never text, and cut short by C
    libraries and providers), is a 422 naming the field."""
    try:
        value = parse_json(text)
    except json.JSONDecodeError as exc:
        raise OutcallError(f"the body is not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from exc
    except RecursionError as exc:
        raise OutcallError("the body is not JSON this API reads: nested too deep") from exc
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise OutcallError(f"the body is not JSON this API reads: {exc}") from exc
    if not isinstance(value, dict):  # every JSON body of this API is an object (Powertools reads [x] as x)
        raise RequestValidationError(
            [{"type": "model_attributes_type", "loc": ("body",), "msg": "the body must be a JSON object"}]
        )
    nul = next(_nul_paths(value), None)
    if nul is not None:
        raise RequestValidationError(
            [{"type": "string_nul", "loc": ("body", *nul), "msg": "must not contain a NUL character (\\u0000)"}]
        )
    return value


def resolve(app: APIGatewayHttpResolver, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """`app.resolve`, after the body checks Powertools' validation cannot make (it parses first)."""
    refused = check_body(event)
    if refused is not None:
        logger.info("body refused", extra={"route": event.get("routeKey"), "status": refused["statusCode"]})
        return refused
    return app.resolve(event, context)


# ---------------------------------------------------------------- the OpenAPI answers

ERROR_ANSWERS: dict[int, str] = {
    400: "The body is not JSON, or not UTF-8",
    401: "No bearer token, or not a valid one (webhooks: the push's signature or secret does not match)",
    404: "No such item",
    409: "Not allowed in the item's current state, or over a limit",
    413: "The body is over this operation's limit",
    415: "The body is not JSON (Content-Type must be application/json)",
    422: "A field, parameter or header is invalid; `errors` names each one",
    502: "The provider refused or failed the operation; `message` has its reason",
}
BODY_ERRORS = (400, 413, 415, 422)


def answers(
    status: int,
    description: str,
    model: Any = None,
    *errors: int,
    example: Any = None,
    content: dict[str, Any] | None = None,
    route_key: str | None = None,
    notes: Mapping[int, str] | None = None,
) -> dict[int, Any]:
    """An operation's `responses=`: its success answer (with `model` and an example, or none for
    204) and each error it can give, all with the one error schema. `route_key` states the body
    limit in the 413 answer."""
    success: dict[str, Any] = {"description": description}
    if content is not None:
        success["content"] = content
    elif model is not None:
        media: dict[str, Any] = {"model": model}
        if example is not None:
            media["examples"] = {"example": {"value": example}}
        success["content"] = {content_types.APPLICATION_JSON: media}
    else:
        success["content"] = {}
    out: dict[int, Any] = {status: success}
    for code in sorted(set(errors)):
        text = (notes or {}).get(code) or ERROR_ANSWERS[code]
        if code == 413 and route_key:
            text = f"{text}: {body_limit(route_key):,} bytes"
        out[code] = {"description": text, "content": {content_types.APPLICATION_JSON: {"model": ErrorBody}}}
    return out


def limit(route_key: str) -> dict[str, Any]:
    """`openapi_extensions=` stating an operation's body limit."""
    return {"x-maxBodyBytes": body_limit(route_key)}


def request_examples(**examples: Any) -> Any:
    """`Body(openapi_examples=...)`: plain dicts (Powertools' Example model costs a cold start)."""
    return {name: {"summary": name.replace("_", " "), "value": value} for name, value in examples.items()}


# ---------------------------------------------------------------- the resolvers


def _is_body_error(errors: Any) -> bool:
    return any(tuple(err.get("loc", ()))[:1] == ("body",) for err in errors)


def configure(app: APIGatewayHttpResolver) -> APIGatewayHttpResolver:
    """Give a function's resolver the API's error shape. Each handler creates its own
    `APIGatewayHttpResolver(enable_validation=True, json_body_deserializer=json_body)` where
    Powertools' OpenAPI merge finds it, and answers with `resolve(app, event, context)`."""

    def answer(status: int, code: str, message: str, errors: Any = None) -> Response:
        return Response(status, content_types.APPLICATION_JSON, error_body(app, code, message, errors))

    @app.exception_handler(OutcallError)
    def _outcall_error(exc: OutcallError) -> Response:
        return answer(exc.status, exc.code, exc.message, exc.details)

    @app.exception_handler(RequestUnsupportedContentType)
    def _unsupported_type(exc: RequestUnsupportedContentType) -> Response:
        content_type = app.current_event.headers.get("content-type", "")
        message = f"the body is {content_type.split(';')[0]}; send JSON with Content-Type: application/json"
        return answer(415, "UnsupportedMediaType", message)

    @app.exception_handler(RequestValidationError)
    def _invalid_request(exc: RequestValidationError) -> Response:
        content_type = app.current_event.headers.get("content-type", "")
        if not _is_json_type(content_type) and _is_body_error(exc.errors()):
            # Powertools read a form body for a JSON route: the media type is what is wrong
            message = f"the body is {content_type.split(';')[0]}; send JSON with Content-Type: application/json"
            return answer(415, "UnsupportedMediaType", message)
        errors = _validation_errors(exc.errors())
        message = "; ".join(f"{e['field'] or 'body'}: {e['message']}" for e in errors) or "invalid request"
        return answer(422, "ValidationError", message, errors)

    @app.exception_handler(ValidationError)
    def _invalid_model(exc: ValidationError) -> Response:
        errors = _validation_errors(exc.errors())
        message = "; ".join(f"{e['field'] or 'body'}: {e['message']}" for e in errors)
        return answer(422, "ValidationError", message, errors)

    @app.not_found
    def _not_found(exc: NotFoundError) -> Response:
        return answer(404, "NotFound", "no such route")

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response:
        logger.exception("unhandled error")
        return answer(500, "InternalError", "internal error")

    return app
