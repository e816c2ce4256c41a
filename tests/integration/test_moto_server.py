"""The local stack's moto process (local.moto_server): transactions that fail put back exactly
the items they named, moto keeps no history of instances, and its memory stays flat over many
transactions on a large table, and connections carry many requests. Run as a real child process, as
the local stack runs it."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

ROOT = Path(__file__).resolve().parents[2]
TABLE = "bounded"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def moto_process() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "local.moto_server", "--port", str(port)], cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, "moto server exited"
            try:
                requests.get(url + "/moto-api/data.json", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "moto server not up in 30 s"
                time.sleep(0.1)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def aws(service: str, moto_process: tuple[subprocess.Popen[bytes], str]) -> Any:
    return boto3.client(
        service,
        endpoint_url=moto_process[1],
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


@pytest.fixture(scope="module")
def ddb(moto_process: tuple[subprocess.Popen[bytes], str]) -> Any:
    client = aws("dynamodb", moto_process)
    client.create_table(
        TableName=TABLE,
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return client


def key(pk: str, sk: str = "A") -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def test_a_cancelled_transaction_puts_back_exactly_the_items_it_named(ddb: Any) -> None:
    ddb.put_item(TableName=TABLE, Item={**key("kept"), "n": {"N": "1"}})
    ddb.put_item(TableName=TABLE, Item={**key("gone"), "n": {"N": "1"}})
    ddb.put_item(TableName=TABLE, Item={**key("bystander"), "n": {"N": "7"}})
    with pytest.raises(ClientError) as caught:
        ddb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": TABLE, "Item": {**key("new"), "n": {"N": "1"}}}},
                {
                    "Update": {
                        "TableName": TABLE,
                        "Key": key("kept"),
                        "UpdateExpression": "SET n = n + :one, extra = :x",
                        "ExpressionAttributeValues": {":one": {"N": "1"}, ":x": {"S": "x"}},
                    }
                },
                {"Delete": {"TableName": TABLE, "Key": key("gone")}},
                {
                    "ConditionCheck": {
                        "TableName": TABLE,
                        "Key": key("bystander"),
                        "ConditionExpression": "n = :zero",
                        "ExpressionAttributeValues": {":zero": {"N": "0"}},
                    }
                },
            ]
        )
    assert caught.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert "Item" not in ddb.get_item(TableName=TABLE, Key=key("new"))
    assert ddb.get_item(TableName=TABLE, Key=key("kept"))["Item"] == {**key("kept"), "n": {"N": "1"}}
    assert ddb.get_item(TableName=TABLE, Key=key("gone"))["Item"] == {**key("gone"), "n": {"N": "1"}}
    assert ddb.get_item(TableName=TABLE, Key=key("bystander"))["Item"]["n"] == {"N": "7"}


def test_a_transaction_that_passes_writes_every_item(ddb: Any) -> None:
    ddb.put_item(TableName=TABLE, Item={**key("counter"), "n": {"N": "1"}})
    ddb.transact_write_items(
        TransactItems=[
            {
                "Put": {
                    "TableName": TABLE,
                    "Item": {**key("t1"), "v": {"S": "a"}},
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {
                "Update": {
                    "TableName": TABLE,
                    "Key": key("counter"),
                    "UpdateExpression": "ADD n :one",
                    "ExpressionAttributeValues": {":one": {"N": "1"}},
                }
            },
        ]
    )
    assert ddb.get_item(TableName=TABLE, Key=key("t1"))["Item"]["v"] == {"S": "a"}
    assert ddb.get_item(TableName=TABLE, Key=key("counter"))["Item"]["n"] == {"N": "2"}
    # the same conditional put again: refused, and the counter is not counted twice
    with pytest.raises(ClientError):
        ddb.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": TABLE,
                        "Item": {**key("t1"), "v": {"S": "b"}},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {
                    "Update": {
                        "TableName": TABLE,
                        "Key": key("counter"),
                        "UpdateExpression": "ADD n :one",
                        "ExpressionAttributeValues": {":one": {"N": "1"}},
                    }
                },
            ]
        )
    assert ddb.get_item(TableName=TABLE, Key=key("t1"))["Item"]["v"] == {"S": "a"}
    assert ddb.get_item(TableName=TABLE, Key=key("counter"))["Item"]["n"] == {"N": "2"}


def test_moto_keeps_no_history_of_instances(ddb: Any, moto_process: tuple[subprocess.Popen[bytes], str]) -> None:
    for n in range(50):
        ddb.put_item(TableName=TABLE, Item={**key(f"hist{n}"), "v": {"S": "x"}})
        ddb.put_item(TableName=TABLE, Item={**key(f"hist{n}"), "v": {"S": "y"}})  # the first one is garbage now
    data = requests.get(moto_process[1] + "/moto-api/data.json", timeout=10).json()
    tracked = {f"{service}.{name}": len(v) for service, models in data.items() for name, v in models.items() if v}
    assert tracked == {}


def test_memory_stays_flat_over_many_transactions_on_a_large_table(
    ddb: Any, moto_process: tuple[subprocess.Popen[bytes], str]
) -> None:
    for start in range(0, 5000, 25):
        ddb.batch_write_item(
            RequestItems={
                TABLE: [
                    {"PutRequest": {"Item": {**key("BIG", f"{n:06d}"), "payload": {"S": "p" * 200}}}}
                    for n in range(start, start + 25)
                ]
            }
        )
    pid = moto_process[0].pid

    def transactions(first: int, count: int) -> None:
        for n in range(first, first + count):
            ddb.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": TABLE, "Item": {**key("TX", f"{n:06d}"), "v": {"S": "x"}}}},
                    {
                        "Update": {
                            "TableName": TABLE,
                            "Key": key("BIG", "000001"),
                            "UpdateExpression": "ADD n :one",
                            "ExpressionAttributeValues": {":one": {"N": "1"}},
                        }
                    },
                    {"Put": {"TableName": TABLE, "Item": {**key("TX2", f"{n:06d}"), "v": {"S": "x"}}}},
                ]
            )

    transactions(0, 20)  # warm up: moto's parsers and caches
    before = rss_mb(pid)
    transactions(20, 200)
    grown = rss_mb(pid) - before
    # stock moto copies the 5,000-item table three times per transaction and keeps every copy
    # (instances_tracked): some 600 table copies here, hundreds of MB
    assert grown < 25, f"moto grew {grown:.1f} MB over 200 transactions"
    assert ddb.get_item(TableName=TABLE, Key=key("BIG", "000001"))["Item"]["n"] == {"N": "220"}


def test_a_message_deleted_twice_is_no_error_and_none_is_lost(
    moto_process: tuple[subprocess.Popen[bytes], str],
) -> None:
    sqs = aws("sqs", moto_process)
    url = sqs.create_queue(QueueName="bounded-q")["QueueUrl"]
    for n in range(30):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{n}")
    seen: list[str] = []
    while len(seen) < 30:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        assert messages, f"only {len(seen)} of 30 came back"
        for m in messages:
            seen.append(m["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    assert sorted(seen) == sorted(f"m{n}" for n in range(30))


def test_an_item_over_400_kb_is_refused_and_one_under_it_is_kept(ddb: Any) -> None:
    # local.moto_speed sizes a new item once: the same limit as moto's per-attribute check
    big = {**key("big"), **{f"a{n}": {"S": "x" * 20_000} for n in range(21)}}  # ~420 KB
    with pytest.raises(ClientError) as caught:
        ddb.put_item(TableName=TABLE, Item=big)
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert "size" in caught.value.response["Error"]["Message"]
    assert "Item" not in ddb.get_item(TableName=TABLE, Key=key("big"))
    fits = {**key("fits"), **{f"a{n}": {"S": "x" * 20_000} for n in range(19)}}  # ~380 KB
    ddb.put_item(TableName=TABLE, Item=fits)
    assert ddb.get_item(TableName=TABLE, Key=key("fits"))["Item"] == fits


def test_every_kind_of_attribute_value_comes_back_as_written(ddb: Any) -> None:
    # local.moto_speed parses DynamoDB requests with functions made once per shape
    item = {
        **key("kinds"),
        "s": {"S": "text"},
        "n": {"N": "12.5"},
        "b": {"B": b"\x00\xffbinary"},
        "ss": {"SS": ["a", "b"]},
        "bs": {"BS": [b"one", b"two"]},
        "null": {"NULL": True},
        "bool": {"BOOL": False},
        "l": {"L": [{"S": "x"}, {"B": b"\x01"}, {"M": {"deep": {"L": [{"N": "1"}]}}}]},
        "m": {"M": {"inner": {"M": {"b": {"B": b"\x02"}}}}},
    }
    ddb.batch_write_item(RequestItems={TABLE: [{"PutRequest": {"Item": item}}]})
    got = ddb.batch_get_item(RequestItems={TABLE: {"Keys": [key("kinds")], "ConsistentRead": True}})
    assert got["Responses"][TABLE] == [item]
    found = ddb.query(
        TableName=TABLE,
        KeyConditionExpression="pk = :pk",
        FilterExpression="b = :b",
        ExpressionAttributeValues={":pk": {"S": "kinds"}, ":b": {"B": b"\x00\xffbinary"}},
    )
    assert found["Items"] == [item]


LIST_TABLES = {  # moto's dispatcher finds the service in the credential scope
    "Authorization": "AWS4-HMAC-SHA256 Credential=local/20261201/us-east-1/dynamodb/aws4_request, Signature=0",
    "Content-Type": "application/x-amz-json-1.0",
    "X-Amz-Target": "DynamoDB_20120810.ListTables",
}


def test_requests_with_bodies_share_one_connection(ddb: Any, moto_process: tuple[subprocess.Popen[bytes], str]) -> None:
    # werkzeug closes every connection; the local stack's server keeps them, as AWS does
    port = int(moto_process[1].rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        first_socket = None
        for n in range(20):  # each request sent as soon as the answer before it is read
            conn.request("POST", "/", body=b'{"Limit": %d}' % (n + 1), headers=LIST_TABLES)
            answer = conn.getresponse()
            body = json.loads(answer.read())
            assert answer.status == 200, body
            assert TABLE in body["TableNames"]
            assert (answer.getheader("Connection") or "").lower() != "close"
            first_socket = first_socket or conn.sock
            assert conn.sock is first_socket, f"request {n} needed a new connection"
    finally:
        conn.close()


def test_a_bad_request_after_a_kept_one_is_answered_and_closed(
    ddb: Any, moto_process: tuple[subprocess.Popen[bytes], str]
) -> None:
    port = int(moto_process[1].rsplit(":", 1)[1])
    body = b'{"Limit": 1}'
    head = "".join(f"{k}: {v}\r\n" for k, v in LIST_TABLES.items())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST / HTTP/1.1\r\nHost: x\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        answer = sock.makefile("rb")
        assert answer.readline().startswith(b"HTTP/1.1 200")
        headers = {}
        while (line := answer.readline()) != b"\r\n":
            name, _, value = line.decode().partition(":")
            headers[name.lower()] = value.strip()
        assert TABLE in json.loads(answer.read(int(headers["content-length"])))["TableNames"]
        assert headers.get("connection", "").lower() != "close"
        sock.sendall(b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n")  # refused before werkzeug
        rest = answer.read()  # to the end: the server closes this connection
    assert rest.startswith(b"HTTP/1.1 431") and b"Connection: close" in rest


def test_a_chunked_body_is_read_and_its_connection_closed(
    ddb: Any,
    moto_process: tuple[subprocess.Popen[bytes], str],
) -> None:
    port = int(moto_process[1].rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/", body=iter([b'{"Limit"', b": 5}"]), headers=LIST_TABLES, encode_chunked=True)
        answer = conn.getresponse()
        assert answer.status == 200
        assert TABLE in json.loads(answer.read())["TableNames"]
        assert answer.getheader("Connection") == "close"  # werkzeug cannot tell where it ended
    finally:
        conn.close()


def test_large_objects_go_through_kept_connections_whole(
    moto_process: tuple[subprocess.Popen[bytes], str],
) -> None:
    s3 = aws("s3", moto_process)
    s3.create_bucket(Bucket="kept-alive")
    body = os.urandom(3 * 1024 * 1024)  # botocore sends it with Expect: 100-continue
    for n in range(3):
        s3.put_object(Bucket="kept-alive", Key=f"o{n}", Body=body)
    for n in range(3):
        assert s3.get_object(Bucket="kept-alive", Key=f"o{n}")["Body"].read() == body
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket="kept-alive")["Contents"]) == ["o0", "o1", "o2"]


def test_sigterm_twice_stops_it_at_once(moto_process: tuple[subprocess.Popen[bytes], str]) -> None:
    proc = moto_process[0]
    os.kill(proc.pid, signal.SIGTERM)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
