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
   with it; a value holding only members kept as they are (`{"S": ...}`, most of every item) is
   passed on as it is instead of copied. tests/unit/test_moto_speed.py checks it answers as moto's
   parser does.
5. `Table.query` (moto/dynamodb/models/table.py) starts from `all_items()`, every item of the
   table sorted by key, then keeps those of the queried key and sorts them again: a query's cost
   grows with the whole table (220 ms per query, 1,753 queries, in a 200-contact dialing test of
   the local stack). Within a query, `all_items()` gives only what the query could match: the
   items of the partition for a table query, and for an index query the items whose string
   hash-key attributes equal the query's (other types are left to moto's own comparison), in no
   order; moto's query then filters and sorts them as before, so pages, limits and start keys are
   unchanged. Scans and everything else keep the sorted list.
6. moto's JSONSerializer (moto/core/serialize.py) walks each result against botocore's model and
   asks its XFormedAttributePicker, with six alias providers, for every member of every value:
   31% of moto's CPU in a dialing test of the local stack, 3 ms to write one 17-attribute item.
   `serialize_dynamodb_once` builds, once per shape of the DynamoDB model, a function writing what
   moto's serializer writes for a dict (each member the first of the keys the picker would try,
   None left out, strings, blobs and numbers converted as moto converts them), leaving objects,
   timestamps, other services and response transformers to moto; tests/unit/test_moto_speed.py
   checks it against moto's serializer on the results of real requests.
7. moto creates its Flask apps with `debug = True`; Flask then builds a new class per request
   (flask.debughelpers.attach_enctype_error_multidict) and lets exceptions propagate. The local
   stack's apps run with debug off: an unexpected error is a 500 answer, as from AWS.
8. werkzeug's server answers every request with `Connection: close` (its http.server cannot tell
   how much of a request body the app left unread before the next request line): every AWS call
   of the functions opened a TCP connection and moto started a thread for it (3,571 in the first
   70 s of a dialing test). `keep_alive_handler` reads a request's body whole before moto sees it
   (Content-Length known; a chunked body keeps werkzeug's closing) and keeps werkzeug's drain
   after the response from reading into the next request, so the connection can carry it:
   HTTP/1.1 keep-alive as boto3's pools expect. Its sockets are TCP_NODELAY: werkzeug writes the
   headers and the body apart, and on a kept connection Nagle's algorithm held the body until the
   client's delayed ACK, 40 ms (a GetItem took 52 ms, 7 ms now).

9. `DynamoType.__init__` (moto/dynamodb/models/dynamo_type.py) builds two lists per value to take
   the one key and value of `{"S": ...}` and asks two methods which kind it is: a fifth of moto's
   CPU on an import, every attribute of every item written or read going through it.
   `dynamo_type_init` takes the first key and value as moto does (an empty value raises the
   IndexError moto's raises) and converts lists and maps the same way, in half the time;
   `dynamo_type_size` sizes a value as DynamoType.size does (every item is sized when written)
   with one test of its type per kind.
10. moto tokenizes an update expression character by character on every UpdateItem and
   transaction item (ExpressionTokenizer.make_list, 7% of moto's CPU on an import: the counts
   updates of each chunk). The tokens of an expression do not change: `tokens_once` keeps them
   for the latest TOKENIZED expressions and hands each parse a list of its own (the parser reads
   the tokens by position and changes none).

`speed_up_moto_server()` applies 1-6, 9 and 10; `serve()` runs moto's WSGI app like
moto.server.ThreadedMotoServer does, with the apps made without debug (7.) and connections kept
alive (8.).
"""

from __future__ import annotations

import functools
import inspect
import io
import threading
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any, TypeVar

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
    query_only_candidates()
    serialize_dynamodb_once()
    build_dynamo_types_directly()
    tokens_once()
    setattr(backends, _PATCHED, True)


def dynamo_type_init(dynamo_type: Any) -> Callable[[Any, Any], None]:
    """What moto's DynamoType.__init__ does: the first key of the value is the type, its value the
    value, list (L) and map (M) members made DynamoTypes in turn (`dynamo_type`, moto's class)."""

    def __init__(self: Any, type_as_dict: Any) -> None:
        if type(type_as_dict) is dynamo_type:
            self.type, self.value = type_as_dict.type, type_as_dict.value
        else:
            for self.type, self.value in type_as_dict.items():  # the first pair, as moto takes list(...)[0]
                break
            else:
                raise IndexError("list index out of range")
        if self.type == "L":
            self.value = [dynamo_type(value) for value in self.value]
        elif self.type == "M":
            self.value = {key: dynamo_type(value) for key, value in self.value.items()}

    return __init__


def dynamo_type_size(dynamo_type: Any) -> Callable[[Any], int]:
    """What moto's DynamoType.size does (the bytes DynamoDB counts for a value), with one test of
    the type per kind instead of a method call per kind asked."""

    def size(self: Any) -> int:
        kind, value = self.type, self.value
        if kind == "N":
            return len(str(value))
        if kind in ("SS", "NS", "BS"):
            return sum(dynamo_type({kind[0]: member}).size() for member in value)
        if kind == "L":
            return sum(member.size() for member in value)
        if kind == "M":
            return sum(
                len(key.encode("utf-8")) + (member if type(member) is dynamo_type else dynamo_type(member)).size()
                for key, member in value.items()
            )
        if isinstance(value, bool):
            return 1
        return len(value if isinstance(value, bytes) else value.encode("utf-8"))

    return size


def build_dynamo_types_directly() -> None:
    from moto.dynamodb.models.dynamo_type import DynamoType

    DynamoType.__init__ = dynamo_type_init(DynamoType)  # type: ignore[method-assign, assignment]
    DynamoType.size = dynamo_type_size(DynamoType)  # type: ignore[method-assign, assignment]


TOKENIZED = 1024  # update expressions whose tokens are kept


def tokens_once() -> None:
    from moto.dynamodb.parsing.tokens import ExpressionTokenizer

    make_list = ExpressionTokenizer.make_list.__func__  # type: ignore[attr-defined]
    kept = functools.lru_cache(maxsize=TOKENIZED)(lambda expression: tuple(make_list(ExpressionTokenizer, expression)))

    def tokens(cls: Any, input_expression_str: str) -> list[Any]:
        return list(kept(input_expression_str))

    ExpressionTokenizer.make_list = classmethod(tokens)  # type: ignore[method-assign, assignment]


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


class _Querying(threading.local):
    """The query this thread is running: (table, hash key, index name, index hash conditions)."""

    query: tuple[Any, Any, str | None, list[tuple[str, Any]]] | None = None


def query_only_candidates() -> None:
    """Table.query starts from the items it could match, not from the whole table sorted (5.)."""
    from moto.dynamodb.models.table import Table

    querying = _Querying()
    all_items, query = Table.all_items, Table.query
    signature = inspect.signature(query)

    def candidates(self: Any) -> list[Any]:
        running = querying.query
        if running is None or running[0] is not self:
            return all_items(self)
        _, hash_key, index_name, conditions = running
        if index_name is None and hash_key is not None:
            partition = self.items.get(hash_key)
            if partition is None:
                return []
            return list(partition.values()) if self.range_key_attr else [partition]
        strings = [(name, value.value) for name, value in conditions if value.type == "S"]
        found = []
        for partition in self.items.values():
            for item in partition.values() if self.range_key_attr else (partition,):
                attrs = item.attrs
                for name, expected in strings:
                    value = attrs.get(name)
                    if value is None or value.type != "S" or value.value != expected:
                        break
                else:
                    found.append(item)
        return found

    @functools.wraps(query)
    def query_candidates(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(self, hash_key, *args, **kwargs).arguments
        before = querying.query
        conditions = list(bound.get("hash_key_conditions") or [])
        querying.query = (self, hash_key, bound.get("index_name"), conditions)
        try:
            return query(self, hash_key, *args, **kwargs)
        finally:
            querying.query = before

    Table.all_items = candidates  # type: ignore[method-assign]
    Table.query = query_candidates  # type: ignore[method-assign]


Convert = Callable[[Any], Any]
F = TypeVar("F")


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
    plain: set[str] = set()  # members kept as they are, under the name they came by (S, N, BOOL, NULL)

    def structure(value: Any) -> Any:
        if value is None:
            return None
        if plain.issuperset(value) and None not in value.values():
            return value  # what the members' conversions would give: {"S": ...}, the most common value
        return {
            members[name][0]: members[name][1](raw)
            for name, raw in value.items()
            if raw is not None and name in members
        }

    done[shape.name] = structure  # before its members: a member may be of this very shape
    for name, member in shape.members.items():
        wire = member.serialization.get("name", name)
        members[wire] = (name, compile_shape(member, done))
        if members[wire][1] is _same and wire == name:
            plain.add(wire)
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
    containers = {"structure": _structure, "list": _list, "map": _map}
    return _made_once(
        shape, done, containers, lambda leaf: _same if leaf.type_name == "structure" else _scalar(leaf.type_name)
    )


def _made_once(
    shape: Any, done: dict[str, F], containers: Mapping[str, Callable[[Any, dict[str, F]], F]], leaf: Callable[[Any], F]
) -> F:
    """The function of `shape`: from `done`, else made by the maker of its kind (structures that
    are not documents, lists, maps) or by `leaf`, and kept in `done`."""
    if shape.name in done:
        return done[shape.name]
    kind = shape.type_name
    maker = None if kind == "structure" and shape.is_document_type else containers.get(kind)
    if maker is not None:
        return maker(shape, done)
    made = done[shape.name] = leaf(shape)
    return made


class _PerShape:
    """Functions made once per shape name by `make(shape, done)`, shared by every thread: a shape and
    the shapes it holds are made aside and published whole, so no thread sees one half made."""

    def __init__(self, make: Callable[[Any, dict[str, Any]], Any]) -> None:
        self._make = make
        self._made: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __call__(self, shape: Any) -> Any:
        made = self._made.get(shape.name)
        if made is None:
            with self._lock:
                aside = dict(self._made)
                made = self._make(shape, aside)
                self._made.update(aside)
        return made


def parse_dynamodb_json_once() -> None:
    """DynamoDB requests are parsed by functions made once per shape (compile_shape); other services and
    parsers given other blob, timestamp or map types keep moto's parser."""
    from moto.core.parse import JSONParser, default_blob_parser, default_timestamp_parser

    original = JSONParser._parse_json_body
    compiled = _PerShape(compile_shape)

    def _parse_json_body(self: Any, raw_body: Any, shape: Any) -> Any:
        if (
            self.operation_model.service_model.service_name != "dynamodb"
            or self._blob_parser is not default_blob_parser
            or self._timestamp_parser is not default_timestamp_parser
            or self.MAP_TYPE is not dict
        ):
            return original(self, raw_body, shape)
        return compiled(shape)(self._parse_body_as_json(raw_body))

    JSONParser._parse_json_body = _parse_json_body  # type: ignore[method-assign]


SKIP: Any = object()  # what an emitter gives for a value moto leaves out (a structure that is None)
Emit = Callable[[Any, Any], Any]  # (moto's serializer, value) -> the serialized value, or SKIP


def _emit_by_moto(shape: Any) -> Emit:
    """moto's own serialization of a value: objects rather than dicts, timestamps."""

    def emit(serializer: Any, value: Any) -> Any:
        out: dict[str, Any] = {}
        serializer._serialize(out, value, shape, "value")
        return out.get(shape.serialization.get("name", "value"), SKIP)

    return emit


def _emit_string(serializer: Any, value: Any) -> Any:
    if type(value) is str:
        return value
    if isinstance(value, Enum):
        value = value.value
    return str(value) if value not in [None, {}, []] else value


def _emit_blob(serializer: Any, value: Any) -> Any:
    return serializer._base64(value)


def _emit_as_is(serializer: Any, value: Any) -> Any:
    return value


def _emit_structure(shape: Any, done: dict[str, Emit]) -> Emit:
    from moto.core.serialize import AttributePickerContext, XFormedAttributePicker

    members: list[tuple[str, tuple[str, ...], Emit]] = []
    by_moto = _emit_by_moto(shape)

    def structure(serializer: Any, value: Any) -> Any:
        if value is None:
            return SKIP
        if type(value) is not dict:
            return by_moto(serializer, value)
        out = {}
        for name, keys, emit in members:
            for key in keys:  # the first key the picker would find
                if key in value:
                    member = value[key]
                    break
            else:
                continue
            if member is not None:
                got = emit(serializer, member)
                if got is not SKIP:
                    out[name] = got
        return out

    done[shape.name] = structure  # before its members: a member may be of this very shape
    picker = XFormedAttributePicker()
    for key, member in shape.members.items():
        member.parent = shape  # as moto sets it before picking: two of its aliases look at the parent
        context = AttributePickerContext(obj={}, key=key, shape=member)
        keys = tuple(dict.fromkeys(picker.get_possible_keys(context)))
        document = member.type_name == "structure" and member.is_document_type
        name = key if document else member.serialization.get("name", key)
        members.append((name, keys, compile_emit(member, done)))
    return structure


def _emit_list(shape: Any, done: dict[str, Emit]) -> Emit:
    cell: list[Emit] = []
    item_key = shape.member.name
    as_given = shape.member.serialization.get("name", item_key) != item_key  # moto then keeps each item raw

    def listed(serializer: Any, value: Any) -> Any:
        emit = cell[0]
        out = []
        for item in value:
            got = emit(serializer, item)
            out.append(item if got is SKIP or as_given else got)
        return out

    done[shape.name] = listed
    cell.append(compile_emit(shape.member, done))
    return listed


def _emit_map(shape: Any, done: dict[str, Emit]) -> Emit:
    cell: list[Emit] = []
    document = shape.value.type_name == "structure" and shape.value.is_document_type
    one_name = None if document else shape.value.serialization.get("name")  # moto keys every entry by it

    def mapped(serializer: Any, value: Any) -> Any:
        emit = cell[0]
        out = {}
        for key, item in value.items():
            got = emit(serializer, item)
            if got is not SKIP:
                out[one_name or key] = got
        return out

    done[shape.name] = mapped
    cell.append(compile_emit(shape.value, done))
    return mapped


def compile_emit(shape: Any, done: dict[str, Emit]) -> Emit:
    """A function serializing a value of `shape` as moto's JSONSerializer does with its
    XFormedAttributePicker and no response transformers (6.): for a dict, each member is the first of
    the keys the picker would try, members that are None are left out, strings, blobs and numbers
    converted as moto converts them; values that are not dicts, timestamps and documents go to moto's
    own methods or as they are, as moto does. `done` holds those already made, by shape name."""
    containers = {"structure": _emit_structure, "list": _emit_list, "map": _emit_map}
    return _made_once(shape, done, containers, _emit_leaf)


def _emit_leaf(shape: Any) -> Emit:
    from moto.core.serialize import JSONSerializer

    kind = shape.type_name
    if kind == "structure" or not hasattr(JSONSerializer, f"_serialize_type_{kind}"):
        return _emit_as_is  # documents, booleans: moto's _default_serialize
    if kind == "string":
        return _emit_string
    if kind == "blob":
        return _emit_blob
    if kind in ("integer", "long"):
        return lambda serializer, value: int(value)
    if kind in ("float", "double"):
        return lambda serializer, value: float(value)
    return _emit_by_moto(shape)


def serialize_dynamodb_once() -> None:
    """DynamoDB results are serialized by functions made once per shape (compile_emit, 6.); other
    services, serializers with another picker, response transformers and results that are not dicts
    keep moto's serializer."""
    from moto.core.serialize import JSONSerializer, XFormedAttributePicker

    original = JSONSerializer._serialize_result
    compiled = _PerShape(compile_emit)

    def _serialize_result(self: Any, resp: Any, result: Any) -> Any:
        shape = self.operation_model.output_shape
        picker = self._value_picker
        if (
            type(self) is not JSONSerializer
            or self.service_model.service_name != "dynamodb"
            or type(picker) is not XFormedAttributePicker
            or picker.response_transformers
            or self.MAP_TYPE is not dict
            or shape is None
            or type(result) is not dict
        ):
            return original(self, resp, result)
        serialized = compiled(shape)(self, result)
        return self._serialized_result_to_response(resp, result, shape, {} if serialized is SKIP else serialized)

    JSONSerializer._serialize_result = _serialize_result  # type: ignore[method-assign]


def create_app_without_debug(service: Any) -> Any:
    from moto.moto_server.werkzeug_app import create_backend_app

    app = create_backend_app(service)
    app.debug = False
    return app


class _Drained(io.BufferedIOBase):
    """A connection's stream once its request body is read whole.

    After each response werkzeug drains whatever the client sent meanwhile (rfile.read of up to
    10 MB), which on a kept-alive connection is the next request: it would be eaten, or block
    until the client gives up. Reading through this finds nothing; the next request line waits in
    `stream`, which the handler reads once the response is done.
    """

    def __init__(self, stream: Any) -> None:
        super().__init__()
        self.stream = stream

    def read(self, size: int | None = -1) -> bytes:
        return b""


def keep_alive_handler() -> type:
    """moto's request handler, keeping HTTP/1.1 connections open (8.)."""
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    class KeepAliveHandler(MotoRequestHandler):
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms wait for an ACK between
        _body_read = False

        def make_environ(self) -> dict[str, Any]:
            environ: dict[str, Any] = super().make_environ()
            length = environ.get("CONTENT_LENGTH") or "0"
            self._body_read = not environ.get("wsgi.input_terminated") and length.isdigit()
            if self._body_read:  # read whole: nothing of this request is left before the next one
                environ["wsgi.input"] = io.BytesIO(self.rfile.read(int(length)))
                self.rfile = _Drained(self.rfile)
            return environ

        def run_wsgi(self) -> None:
            try:
                super().run_wsgi()
            finally:
                self._body_read = False  # the next request's own errors (a bad request line) close as usual
                if isinstance(self.rfile, _Drained):
                    self.rfile = self.rfile.stream

        def send_header(self, keyword: str, value: str) -> None:
            if self._body_read and keyword.lower() == "connection" and value.lower() == "close":
                return  # werkzeug closes every connection; this one can go on
            super().send_header(keyword, value)

    return KeepAliveHandler


def make_server(host: str, port: int) -> Any:
    """A threaded WSGI server of moto's apps (not yet serving)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication
    from werkzeug.serving import make_server as werkzeug_server

    app = DomainDispatcherApplication(create_app_without_debug)
    return werkzeug_server(host, port, app, threaded=True, request_handler=keep_alive_handler())
