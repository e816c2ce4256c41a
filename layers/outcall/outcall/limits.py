"""Named limits of what the API takes, derived from what DynamoDB can store, and the checks that
hold requests to them before anything is written (README "Limits").

DynamoDB refuses an item over 400 KB (names and values, UTF-8), a document nested deeper than 32
levels and a number of more than 38 significant digits. Every request field that ends up in an
item is bounded so that the largest item the API can produce stays well under those limits:
tests/unit/test_limits.py builds the largest task and the largest contact and measures them.

Bounds a JSON schema can say (lengths, item counts, ranges) are pydantic Field constraints, so
the OpenAPI document states them; the rest (bytes as JSON, depth, number size) are checked by
`bounded_json` and named in the field's description.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, Final

# ---------------------------------------------------------------- DynamoDB
DYNAMODB_ITEM_BYTES: Final = 400 * 1024
DYNAMODB_MAX_DEPTH: Final = 32
DYNAMODB_NUMBER_DIGITS: Final = 38
DYNAMODB_NUMBER_MAX: Final = 9.9999999999999999999999999999999999999e125  # magnitudes it can store
DYNAMODB_NUMBER_MIN: Final = 1e-130

# ---------------------------------------------------------------- a task item (settings and all)
TASK_NAME_CHARS: Final = 100
MAX_CALLER_IDS: Final = 100
CALLER_ID_CHARS: Final = 32
TIMEZONE_CHARS: Final = 64  # the longest IANA name is 32 characters
MAX_BLACKOUT_DATES: Final = 366
MAX_WEEKDAYS: Final = 7
PROVIDER_OPTIONS_BYTES: Final = 32 * 1024  # as compact JSON, UTF-8
PROVIDER_OPTIONS_KEYS: Final = 200  # top-level keys
PROVIDER_OPTIONS_DEPTH: Final = 8  # levels of objects/arrays inside providerOptions (DynamoDB: 32 per item)

# ---------------------------------------------------------------- a contact item
CONTACT_TEXT_CHARS: Final = 200  # name, company, externalId
NUMBER_PART_CHARS: Final = 32  # countryCode, mobile, areaCode, phone as given
MAX_VARIABLES: Final = 50
VARIABLE_NAME_CHARS: Final = 64
VARIABLE_VALUE_CHARS: Final = 2000
VARIABLES_BYTES: Final = 16 * 1024  # all of a contact's variables as compact JSON

# ---------------------------------------------------------------- uploads, meetings, regions
REGION_CHARS: Final = 2
ID_CHARS: Final = 64  # ids given in paths or bodies (taskId, eventId, importId)
TOKEN_CHARS: Final = 256

# ---------------------------------------------------------------- request bodies
# A JSON number literal longer than this is never a valid value anywhere in the API (DynamoDB
# keeps 38 digits); it is not converted to a Python int (whose parser refuses 4,300 digits with a
# ValueError), but kept as its text so that the field it is in is named in the 422.
JSON_NUMBER_CHARS: Final = 64


class JsonNumberText(str):
    """A JSON number literal too long to be a number here (see JSON_NUMBER_CHARS)."""


def _parse_int(text: str) -> int | JsonNumberText:
    return int(text) if len(text) <= JSON_NUMBER_CHARS else JsonNumberText(text)


def _parse_float(text: str) -> float | JsonNumberText:
    return float(text) if len(text) <= JSON_NUMBER_CHARS else JsonNumberText(text)


def _refuse_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON (RFC 8259 has no NaN or Infinity)")


def read_json(text: str | bytes) -> Any:
    """The request body deserializer of every HTTP function. Whatever the body, the outcome is a
    value or a json.JSONDecodeError (Powertools answers 422 with the position): never the
    ValueError of a 5,000-digit number nor the RecursionError of a body nested 100,000 deep."""
    doc = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    try:
        return json.loads(doc, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_refuse_constant)
    except json.JSONDecodeError:
        raise
    except RecursionError as exc:
        raise json.JSONDecodeError("JSON nested too deeply", doc, 0) from exc
    except ValueError as exc:
        raise json.JSONDecodeError(str(exc)[:200], doc, 0) from exc


# ---------------------------------------------------------------- JSON-valued fields


def json_problem(value: Any, *, max_bytes: int, max_depth: int) -> str | None:
    """Why `value` (a JSON object from a request) cannot be stored, or None. Walks it without
    recursion, so a 500-deep value costs no stack, and stops at the first problem."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= max_depth:
                return f"nested deeper than {max_depth} levels"
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, JsonNumberText):
            return f"a number with more than {DYNAMODB_NUMBER_DIGITS} digits"
        elif isinstance(item, bool) or item is None or isinstance(item, str):
            continue
        elif isinstance(item, int):
            if len(str(abs(item))) > DYNAMODB_NUMBER_DIGITS:
                return f"a number with more than {DYNAMODB_NUMBER_DIGITS} digits"
        elif isinstance(item, float):
            size = abs(item)
            if not math.isfinite(item) or size > DYNAMODB_NUMBER_MAX or (size and size < DYNAMODB_NUMBER_MIN):
                return "a number out of range (1e-130 to 1e125)"
        else:
            return f"a value that is not JSON ({type(item).__name__})"
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    if size > max_bytes:
        return f"{size} bytes as JSON; at most {max_bytes}"
    return None


def bounded_json(*, max_bytes: int, max_depth: int) -> Callable[[Any], Any]:
    """A pydantic AfterValidator for a JSON-valued field: its error names the field."""

    def check(value: Any) -> Any:
        problem = json_problem(value, max_bytes=max_bytes, max_depth=max_depth)
        if problem:
            raise ValueError(problem)
        return value

    return check


def known_region(value: str) -> str:
    """An ISO 3166 region phonenumbers knows (CN, US, GB, ...), upper-cased; a pydantic validator."""
    # imported here: phonenumbers' region table is only needed for requests that name a region
    from phonenumbers import SUPPORTED_REGIONS

    region = value.upper()
    if region not in SUPPORTED_REGIONS:
        raise ValueError(f"{value!r} is not a region phonenumbers knows (ISO 3166 alpha-2, e.g. CN, US, GB)")
    return region
