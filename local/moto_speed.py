"""moto server without the work it repeats on every request (moto 5.2, measured with cProfile on
PutItem through moto's WSGI app: about 5.9 ms of CPU per request, 2.5 ms of it below).

1. `moto.backends.list_of_moto_modules()` lists moto's package directory and stats each of its
   ~50 entries on every request (moto_server/werkzeug_app.py, get_backend_for_host). The package
   does not change while the server runs: the list is read once.
2. `moto.core.responses.method_names_from_class` runs `inspect.getmembers` over the response
   class on every request (BaseResponse.call_action). A class's functions do not change: the
   names are kept per class.
3. `Item.__init__` (moto/dynamodb/models/dynamo_type.py) puts each attribute into a
   `LimitedSizeDict` whose `__setitem__` sums the size of every attribute already there, to
   refuse an item over 400 KB: a 17-attribute contact costs ~140 `DynamoType.size()` calls,
   0.9 ms of the 1.1 ms moto spends on its PutItem (cProfile, 5,000 contacts). The item is
   sized once, with the same sum, and refused with the same ItemSizeTooLarge; later writes of
   one attribute (update_item) keep moto's check.
4. moto's JSON request parser (moto/core/parse.py, BaseJSONParser) walks the request against
   botocore's model: for every AttributeValue it looks up the handler of each of its ten members
   by name and asks the value for each (6.7 s of moto's 26 s of CPU for two 5,000-row chunks).
   `parse_dynamodb_json_once` builds, once per shape of the DynamoDB model, a function doing the
   same conversions (blobs base64-decoded, timestamps parsed, numbers of integer and float
   shapes converted, unknown and null members dropped, documents kept) and parses each request
   with it; tests/unit/test_moto_speed.py checks it answers as moto's parser does.
5. moto creates its Flask apps with `debug = True`; Flask then builds a new class per request
   (flask.debughelpers.attach_enctype_error_multidict) and lets exceptions propagate. The local
   stack's apps run with debug off: an unexpected error is a 500 answer, as from AWS.

`speed_up_moto_server()` applies them; `serve()` runs moto's WSGI app like
moto.server.ThreadedMotoServer does, with the apps made without debug.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

_PATCHED = "_outcall_speed"
ITEM_SIZE_LIMIT = 405_000  # moto's LimitedSizeDict: "the actual limit is between 409 and 410KB"


def speed_up_moto_server() -> None:
    import moto.backends as backends
    import moto.core.responses as responses

    if getattr(backends, _PATCHED, False):
        return
    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules
    responses.method_names_from_class = functools.lru_cache(maxsize=None)(responses.method_names_from_class)
    size_items_once()
    parse_dynamodb_json_once()
    setattr(backends, _PATCHED, True)


def size_items_once() -> None:
    """A new Item is sized once (the sum LimitedSizeDict makes per attribute), not per attribute."""
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict
    from moto.dynamodb.models.utilities import bytesize

    def __init__(self: Any, hash_key: Any, range_key: Any, attrs: dict[str, Any]) -> None:
        self.hash_key = hash_key
        self.range_key = range_key
        self.attrs = LimitedSizeDict()
        converted = {key: DynamoType(value) for key, value in attrs.items()}
        if sum(bytesize(key) + value.size() for key, value in converted.items()) > ITEM_SIZE_LIMIT:
            raise ItemSizeTooLarge
        dict.update(self.attrs, converted)

    Item.__init__ = __init__  # type: ignore[method-assign]


Convert = Callable[[Any], Any]


def _same(value: Any) -> Any:
    return value


def _scalar(kind: str) -> Convert:
    from moto.core.parse import UNDEFINED, default_blob_parser, default_timestamp_parser

    if kind == "blob":
        return default_blob_parser
    if kind == "timestamp":
        return default_timestamp_parser
    if kind in ("float", "double"):
        return lambda value: value if value is UNDEFINED else float(value)
    if kind in ("integer", "long", "short", "byte"):
        return lambda value: value if value is UNDEFINED else int(value)
    return _same  # string, boolean: moto's _default_handle


def _structure(shape: Any, done: dict[str, Convert]) -> Convert:
    members: dict[str, tuple[str, Convert]] = {}

    def structure(value: Any) -> Any:
        if value is None:
            return None
        return {
            members[name][0]: members[name][1](raw)
            for name, raw in value.items()
            if raw is not None and name in members
        }

    done[shape.name] = structure  # before its members: a member may be of this very shape
    for name, member in shape.members.items():
        members[member.serialization.get("name", name)] = (name, compile_shape(member, done))
    return structure


def _list(shape: Any, done: dict[str, Convert]) -> Convert:
    cell: list[Convert] = []

    def listed(node: Any) -> Any:
        item = cell[0]
        return [item(value) for value in node]

    done[shape.name] = listed
    cell.append(compile_shape(shape.member, done))
    return listed


def _map(shape: Any, done: dict[str, Convert]) -> Convert:
    pair: list[Convert] = []

    def mapped(node: Any) -> Any:
        key, value = pair
        return {key(k): value(v) for k, v in node.items()}

    done[shape.name] = mapped
    pair.extend((compile_shape(shape.key, done), compile_shape(shape.value, done)))
    return mapped


def compile_shape(shape: Any, done: dict[str, Convert]) -> Convert:
    """A function converting a value of `shape` as moto's BaseJSONParser._parse_shape does (with its
    default blob and timestamp parsers and dict maps): blobs base64-decoded, timestamps parsed, numbers
    of integer and float shapes converted, members unknown or null dropped, documents kept. `done`
    holds those already made, by shape name (the model's shapes are named, and recursive:
    AttributeValue holds maps of AttributeValue)."""
    if shape.name in done:
        return done[shape.name]
    kind = shape.type_name
    if kind == "structure" and not shape.is_document_type:
        return _structure(shape, done)
    if kind == "list":
        return _list(shape, done)
    if kind == "map":
        return _map(shape, done)
    convert = _same if kind == "structure" else _scalar(kind)
    done[shape.name] = convert
    return convert


def parse_dynamodb_json_once() -> None:
    """DynamoDB requests are parsed by functions made once per shape (compile_shape); other services and
    parsers given other blob, timestamp or map types keep moto's parser."""
    from moto.core.parse import JSONParser, default_blob_parser, default_timestamp_parser

    original = JSONParser._parse_json_body
    compiled: dict[str, Convert] = {}
    lock = threading.Lock()

    def _parse_json_body(self: Any, raw_body: Any, shape: Any) -> Any:
        if (
            self.operation_model.service_model.service_name != "dynamodb"
            or self._blob_parser is not default_blob_parser
            or self._timestamp_parser is not default_timestamp_parser
            or self.MAP_TYPE is not dict
        ):
            return original(self, raw_body, shape)
        convert = compiled.get(shape.name)
        if convert is None:
            with lock:  # made aside and published whole: no request sees a shape half made
                made = dict(compiled)
                convert = compile_shape(shape, made)
                compiled.update(made)
        return convert(self._parse_body_as_json(raw_body))

    JSONParser._parse_json_body = _parse_json_body  # type: ignore[method-assign]


def create_app_without_debug(service: Any) -> Any:
    from moto.moto_server.werkzeug_app import create_backend_app

    app = create_backend_app(service)
    app.debug = False
    return app


def make_server(host: str, port: int) -> Any:
    """A threaded WSGI server of moto's apps (not yet serving)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler
    from werkzeug.serving import make_server as werkzeug_server

    app = DomainDispatcherApplication(create_app_without_debug)
    return werkzeug_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
