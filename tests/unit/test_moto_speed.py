"""local.moto_speed's DynamoDB request parser answers as moto's own (moto/core/parse.py JSONParser):
the same conversions on requests holding every kind of attribute value, nested and recursive,
with the members moto drops (unknown, null) dropped; its response serializer writes what moto's
JSONSerializer writes; its queries find what moto's whole-table queries find. moto itself is not patched here: the
compiled functions are compared with a stock parser side by side."""

from __future__ import annotations

import base64
import copy
import json
from datetime import UTC, datetime
from enum import Enum
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from moto.core.parse import JSONParser
from moto.core.utils import get_service_model

from local.moto_speed import compile_shape

BLOB = base64.b64encode(b"\x00\xffbinary").decode()
EVERY_KIND: dict[str, dict[str, Any]] = {
    "s": {"S": "text"},
    "n": {"N": "12.5"},
    "b": {"B": BLOB},
    "ss": {"SS": ["a", "b"]},
    "ns": {"NS": ["1", "2"]},
    "bs": {"BS": [BLOB, base64.b64encode(b"two").decode()]},
    "null": {"NULL": True},
    "bool": {"BOOL": False},
    "l": {"L": [{"S": "x"}, {"B": BLOB}, {"M": {"deep": {"L": [{"N": "1"}, {"BS": [BLOB]}]}}}]},
    "m": {"M": {"inner": {"M": {"b": {"B": BLOB}, "n": {"N": "3"}}}, "empty": {"M": {}}}},
}
KEY = {"pk": {"S": "TASK#1"}, "sk": {"B": BLOB}}
REQUESTS: dict[str, dict[str, Any]] = {
    "PutItem": {
        "TableName": "t",
        "Item": {**KEY, **EVERY_KIND},
        "ConditionExpression": "attribute_not_exists(pk)",
        "ReturnValues": "ALL_OLD",
        "Unknown": {"dropped": True},
        "Expected": None,
    },
    "BatchWriteItem": {
        "RequestItems": {
            "t": [{"PutRequest": {"Item": {**KEY, **EVERY_KIND}}}, {"DeleteRequest": {"Key": KEY}}],
            "u": [{"PutRequest": {"Item": {"pk": {"S": "x"}}}}],
        },
        "ReturnConsumedCapacity": "TOTAL",
    },
    "BatchGetItem": {
        "RequestItems": {"t": {"Keys": [KEY, {"pk": {"S": "y"}, "sk": {"B": BLOB}}], "ConsistentRead": True}}
    },
    "Query": {
        "TableName": "t",
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": "TASK#1"}, ":b": {"B": BLOB}},
        "ExclusiveStartKey": KEY,
        "Limit": 25,
        "ScanIndexForward": False,
    },
    "TransactWriteItems": {
        "TransactItems": [
            {"Put": {"TableName": "t", "Item": {**KEY, **EVERY_KIND}}},
            {
                "Update": {
                    "TableName": "t",
                    "Key": KEY,
                    "UpdateExpression": "SET n = n + :one",
                    "ExpressionAttributeValues": {":one": {"N": "1"}},
                }
            },
            {"ConditionCheck": {"TableName": "t", "Key": KEY, "ConditionExpression": "attribute_exists(pk)"}},
        ],
        "ClientRequestToken": "token",
    },
    "UpdateTimeToLive": {"TableName": "t", "TimeToLiveSpecification": {"Enabled": True, "AttributeName": "ttl"}},
    "Scan": {"TableName": "t", "Segment": 1, "TotalSegments": 4, "ScanFilter": {"n": {"ComparisonOperator": "GT"}}},
    "RestoreTableToPointInTime": {"SourceTableName": "t", "TargetTableName": "u", "RestoreDateTime": 1700000000},
}


@pytest.mark.parametrize("operation", sorted(REQUESTS))
def test_the_compiled_parser_converts_as_motos_parser_does(operation: str) -> None:
    model = get_service_model("dynamodb").operation_model(operation)
    body = json.dumps(REQUESTS[operation]).encode()
    expected = JSONParser(model)._parse_json_body(body, model.input_shape)
    got = compile_shape(model.input_shape, {})(json.loads(body))
    assert got == expected
    assert "Unknown" not in got and "Expected" not in got


def test_values_with_unknown_or_null_members_lose_them_as_with_motos_parser() -> None:
    model = get_service_model("dynamodb").operation_model("PutItem")
    odd = {
        "unknown": {"S": "x", "Q": "dropped"},
        "null": {"N": "1", "S": None},
        "deep": {"M": {"a": {"S": "y", "Z": 1}, "b": {"L": [{"BOOL": True, "S": None}]}}},
        "plain": {"S": "kept"},
    }
    body = json.dumps({"TableName": "t", "Item": {**KEY, **odd}}).encode()
    expected = JSONParser(model)._parse_json_body(body, model.input_shape)
    got = compile_shape(model.input_shape, {})(json.loads(body))
    assert got == expected
    assert got["Item"]["unknown"] == {"S": "x"} and got["Item"]["null"] == {"N": "1"}
    assert got["Item"]["deep"] == {"M": {"a": {"S": "y"}, "b": {"L": [{"BOOL": True}]}}}


def test_binary_values_come_out_decoded_and_numbers_of_numeric_shapes_as_numbers() -> None:
    model = get_service_model("dynamodb").operation_model("Query")
    got = compile_shape(model.input_shape, {})(REQUESTS["Query"])
    assert got["ExclusiveStartKey"]["sk"] == {"B": b"\x00\xffbinary"}
    assert got["ExpressionAttributeValues"][":b"] == {"B": b"\x00\xffbinary"}
    assert got["Limit"] == 25 and got["ExpressionAttributeValues"][":pk"] == {"S": "TASK#1"}


def _query_table(client: Any) -> None:
    """A table shaped as outcall's (pk/sk, a GSI on gsi1pk/gsi1sk) and a numeric-keyed index, with
    items in several partitions, items outside the index and an index key of another type."""
    client.create_table(
        TableName="q",
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": a, "AttributeType": t}
            for a, t in (("pk", "S"), ("sk", "S"), ("gsi1pk", "S"), ("gsi1sk", "S"), ("num", "N"))
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "gsi1",
                "KeySchema": [
                    {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                    {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            },
            {
                "IndexName": "bynum",
                "KeySchema": [{"AttributeName": "num", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            },
        ],
    )
    for i in range(120):
        item: dict[str, Any] = {
            "pk": {"S": f"P#{i % 4}"},
            "sk": {"S": f"S#{(i * 7919) % 1000:04d}"},
            "v": {"N": str(i)},
        }
        if i % 3:
            item |= {"gsi1pk": {"S": f"G#{i % 2}"}, "gsi1sk": {"S": f"{(i * 31) % 97:03d}"}}
        if i % 5 == 0:
            item["num"] = {"N": str(i % 2)}
        client.put_item(TableName="q", Item=item)


QUERIES: list[dict[str, Any]] = [
    {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "P#1"}}},
    {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "P#9"}}},
    {
        "KeyConditionExpression": "pk = :p AND begins_with(sk, :s)",
        "ExpressionAttributeValues": {":p": {"S": "P#2"}, ":s": {"S": "S#0"}},
        "ScanIndexForward": False,
        "Limit": 4,
    },
    {"IndexName": "gsi1", "KeyConditionExpression": "gsi1pk = :g", "ExpressionAttributeValues": {":g": {"S": "G#1"}}},
    {
        "IndexName": "gsi1",
        "KeyConditionExpression": "gsi1pk = :g AND gsi1sk BETWEEN :a AND :b",
        "FilterExpression": "v > :v",
        "ExpressionAttributeValues": {":g": {"S": "G#0"}, ":a": {"S": "010"}, ":b": {"S": "060"}, ":v": {"N": "20"}},
        "Limit": 7,
    },
    {"IndexName": "gsi1", "KeyConditionExpression": "gsi1pk = :g", "ExpressionAttributeValues": {":g": {"S": "P#1"}}},
    {"IndexName": "bynum", "KeyConditionExpression": "num = :n", "ExpressionAttributeValues": {":n": {"N": "1"}}},
    {
        "IndexName": "gsi1",
        "KeyConditionExpression": "gsi1pk = :g",
        "ExpressionAttributeValues": {":g": {"S": "G#1"}},
        "Select": "COUNT",
    },
]


def _every_page(client: Any, query: dict[str, Any]) -> list[dict[str, Any]]:
    pages, start = [], None
    while True:
        page = client.query(TableName="q", **query, **({"ExclusiveStartKey": start} if start else {}))
        page.pop("ResponseMetadata", None)
        pages.append(page)
        start = page.get("LastEvaluatedKey")
        if not start:
            return pages


def test_queries_from_their_candidates_answer_as_motos_whole_table_query(monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from moto import mock_aws
    from moto.dynamodb.models.table import Table

    from local.moto_speed import query_only_candidates

    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        _query_table(client)
        limited = [q | {"Limit": q.get("Limit", 5)} for q in QUERIES]  # every query paged as well
        expected = [_every_page(client, q) for q in QUERIES + limited]
        whole = Table.all_items
        monkeypatch.setattr(Table, "all_items", Table.all_items)  # undone after the test
        monkeypatch.setattr(Table, "query", Table.query)
        query_only_candidates()
        assert Table.all_items is not whole
        got = [_every_page(client, q) for q in QUERIES + limited]
        scanned = client.scan(TableName="q")["Items"]  # a scan keeps the whole table, sorted
    assert got == expected
    assert sum(len(p.get("Items", [])) for p in expected[0]) == 30 and len(expected[3 + len(QUERIES)]) > 1
    assert len(scanned) == 120


class Status(Enum):
    ACTIVE = "ACTIVE"


HAND_MADE: dict[str, dict[str, Any]] = {  # what moto's results could hold besides plain dicts
    "DescribeTable": {
        "Table": {
            "TableName": "t",
            "TableStatus": Status.ACTIVE,  # an Enum: its value
            "CreationDateTime": datetime(2026, 12, 3, 8, 30, tzinfo=UTC),  # a timestamp: moto's own
            "ItemCount": "7",  # a long given as a string
            "TableSizeBytes": None,  # left out
            "ProvisionedThroughput": SimpleNamespace(ReadCapacityUnits=0, WriteCapacityUnits=0),  # an object
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, None],
            "Unknown": "not in the model",
        }
    },
    "GetItem": {"Item": {"b": {"B": b"\x00\xff"}, "n": {"N": 5}, "e": {"M": {}}}, "ConsumedCapacity": None},
    "Query": {"Items": [], "Count": 0, "ScannedCount": 0},
    "ListTables": {},
}


def _captured_results() -> list[tuple[str, Any]]:
    """(operation, result) as moto hands them to its serializer, over a session of real requests."""
    import boto3
    from moto import mock_aws
    from moto.core.serialize import JSONSerializer

    seen: list[tuple[str, Any]] = []
    original = JSONSerializer._serialize_result

    def capture(self: Any, resp: Any, result: Any) -> Any:
        seen.append((self.operation_model.name, copy.deepcopy(result)))
        return original(self, resp, result)

    with mock.patch.object(JSONSerializer, "_serialize_result", capture), mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        _query_table(client)
        raw = EVERY_KIND | {"b": {"B": b"\x00\xffbinary"}, "bs": {"BS": [b"one"]}}
        client.put_item(TableName="q", Item={"pk": {"S": "P#1"}, "sk": {"S": "kinds"}, **raw})
        client.get_item(TableName="q", Key={"pk": {"S": "P#1"}, "sk": {"S": "kinds"}}, ReturnConsumedCapacity="TOTAL")
        for query in QUERIES:
            client.query(TableName="q", **(query | {"Limit": 3}))
        client.scan(TableName="q", Limit=10)
        client.batch_get_item(RequestItems={"q": {"Keys": [{"pk": {"S": "P#1"}, "sk": {"S": "kinds"}}]}})
        client.batch_write_item(RequestItems={"q": [{"PutRequest": {"Item": {"pk": {"S": "x"}, "sk": {"S": "y"}}}}]})
        client.update_item(
            TableName="q",
            Key={"pk": {"S": "P#1"}, "sk": {"S": "kinds"}},
            UpdateExpression="SET v = :v",
            ExpressionAttributeValues={":v": {"L": [{"N": "1"}, {"NULL": True}]}},
            ReturnValues="ALL_NEW",
        )
        client.transact_get_items(
            TransactItems=[{"Get": {"TableName": "q", "Key": {"pk": {"S": "P#1"}, "sk": {"S": "kinds"}}}}]
        )
        client.describe_table(TableName="q")
        client.list_tables()
        client.update_time_to_live(
            TableName="q", TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiresAt"}
        )
        client.describe_time_to_live(TableName="q")
    return seen


def test_the_compiled_serializer_answers_as_motos_serializer_does() -> None:
    from moto.core.serialize import JSONSerializer, XFormedAttributePicker

    from local.moto_speed import compile_emit

    results = _captured_results() + list(HAND_MADE.items())
    operations = {name for name, _ in results}
    assert {"Query", "GetItem", "DescribeTable", "BatchGetItem", "TransactGetItems", "UpdateItem"} <= operations
    model = get_service_model("dynamodb")
    for name, result in results:
        operation = model.operation_model(name)
        expected = JSONSerializer(operation, value_picker=XFormedAttributePicker()).serialize(copy.deepcopy(result))
        serializer = JSONSerializer(operation, value_picker=XFormedAttributePicker())
        got = compile_emit(operation.output_shape, {})(serializer, copy.deepcopy(result))
        assert json.dumps(got) == expected["body"], name  # the same members, values and order


def test_the_serializer_is_patched_for_dynamodb_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.core.serialize import JSONSerializer, XFormedAttributePicker

    from local import moto_speed

    monkeypatch.setattr(JSONSerializer, "_serialize_result", JSONSerializer._serialize_result)  # undone after
    moto_speed.serialize_dynamodb_once()
    made = mock.patch.object(moto_speed._PerShape, "__call__", autospec=True, side_effect=moto_speed._PerShape.__call__)
    with made as compiled:
        get_item = get_service_model("dynamodb").operation_model("GetItem")
        answer = JSONSerializer(get_item, value_picker=XFormedAttributePicker()).serialize(HAND_MADE["GetItem"])
        assert json.loads(answer["body"]) == {"Item": {"b": {"B": "AP8="}, "n": {"N": "5"}, "e": {"M": {}}}}
        assert answer["headers"]["Content-Type"] == "application/x-amz-json-1.0"
        assert compiled.call_count == 1  # written by the compiled functions
        transformed = XFormedAttributePicker(response_transformers={"Item": lambda value: None})
        answer = JSONSerializer(get_item, value_picker=transformed).serialize(HAND_MADE["GetItem"])
        assert json.loads(answer["body"]) == {}  # moto's own path: its transformers apply
        secret = get_service_model("secretsmanager").operation_model("GetSecretValue")
        answer = JSONSerializer(secret, value_picker=XFormedAttributePicker()).serialize({"Name": "s", "ARN": "a"})
        assert json.loads(answer["body"]) == {"ARN": "a", "Name": "s"}
        assert compiled.call_count == 1  # neither went through them


def _made(value: Any) -> Any:
    """A DynamoType made by local.moto_speed.dynamo_type_init (stock moto keeps its own __init__)."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    from local.moto_speed import dynamo_type_init

    made = DynamoType.__new__(DynamoType)
    dynamo_type_init(DynamoType)(made, value)
    return made


def _same_type(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if hasattr(a, "type"):
        return a.type == b.type and _same_type(a.value, b.value)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_type(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_type(a[k], b[k]) for k in a)
    return bool(a == b)


@pytest.mark.parametrize("name", sorted(EVERY_KIND))
def test_dynamo_types_are_made_as_moto_makes_them(name: str) -> None:
    from moto.dynamodb.models.dynamo_type import DynamoType

    value: dict[str, Any] = copy.deepcopy(EVERY_KIND[name])
    assert _same_type(_made(copy.deepcopy(value)), DynamoType(value))
    stock = DynamoType(copy.deepcopy(value))
    assert _same_type(_made(stock), DynamoType(stock))  # made from another DynamoType: its type and value


@pytest.mark.parametrize("name", sorted(EVERY_KIND))
def test_values_are_sized_as_moto_sizes_them(name: str) -> None:
    from moto.dynamodb.models.dynamo_type import DynamoType

    from local.moto_speed import dynamo_type_size

    model = get_service_model("dynamodb").operation_model("PutItem")
    parsed = compile_shape(model.input_shape, {})({"TableName": "t", "Item": copy.deepcopy(EVERY_KIND)})
    value = DynamoType(parsed["Item"][name])  # blobs decoded, as moto holds them
    assert dynamo_type_size(DynamoType)(value) == value.size() > 0
    whole = DynamoType({"M": parsed["Item"]})
    assert dynamo_type_size(DynamoType)(whole) == whole.size()


def test_a_dynamo_type_of_nothing_fails_as_motos_does() -> None:
    from moto.dynamodb.models.dynamo_type import DynamoType

    with pytest.raises(IndexError):
        DynamoType({})
    with pytest.raises(IndexError):
        _made({})
    two = {"S": "first", "N": "2"}  # moto takes the first member
    assert _same_type(_made(dict(two)), DynamoType(dict(two)))


def test_kept_tokens_are_the_tokenizers_and_each_parse_gets_its_own_list(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.dynamodb.parsing.tokens import ExpressionTokenizer

    from local import moto_speed

    expressions = [
        "SET #s = :s, updatedAt = :now ADD counts.#a :one, #b :two REMOVE gone[2]",
        "ADD numbersUsed :n SET leaseUntil = if_not_exists(leaseUntil, :t) - :d",
    ]
    monkeypatch.setattr(ExpressionTokenizer, "make_list", ExpressionTokenizer.__dict__["make_list"])  # put back after
    moto_speed.tokens_once()
    for expression in expressions:
        first, second = ExpressionTokenizer.make_list(expression), ExpressionTokenizer.make_list(expression)
        fresh = ExpressionTokenizer(expression)._make_list()
        assert [(t.type, t.value) for t in first] == [(t.type, t.value) for t in fresh]
        assert first == second and first is not second  # a list of its own for each parse
    with pytest.raises(Exception, match="Invalid"):
        ExpressionTokenizer.make_list("SET a = :v \x00")
