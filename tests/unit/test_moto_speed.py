"""local.moto_speed's DynamoDB request parser answers as moto's own (moto/core/parse.py JSONParser):
the same conversions on requests holding every kind of attribute value, nested and recursive,
with the members moto drops (unknown, null) dropped. moto itself is not patched here: the
compiled functions are compared with a stock parser side by side."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from moto.core.parse import JSONParser
from moto.core.utils import get_service_model

from local.moto_speed import compile_shape

BLOB = base64.b64encode(b"\x00\xffbinary").decode()
EVERY_KIND = {
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


def test_binary_values_come_out_decoded_and_numbers_of_numeric_shapes_as_numbers() -> None:
    model = get_service_model("dynamodb").operation_model("Query")
    got = compile_shape(model.input_shape, {})(REQUESTS["Query"])
    assert got["ExclusiveStartKey"]["sk"] == {"B": b"\x00\xffbinary"}
    assert got["ExpressionAttributeValues"][":b"] == {"B": b"\x00\xffbinary"}
    assert got["Limit"] == 25 and got["ExpressionAttributeValues"][":pk"] == {"S": "TASK#1"}
