"""Bearer tokens (stored as SHA-256 only) and the Lambda authorizer, against moto."""

from __future__ import annotations

import hashlib
from typing import Any

import boto3
import pytest
from outcall import tokens
from outcall.store import Store

from tests.helpers import load_event


def _items(stack: Any) -> list[dict[str, Any]]:
    table = boto3.resource("dynamodb", region_name="us-east-1").Table(stack.physical_name("Table"))
    return table.scan()["Items"]


def test_only_the_hash_of_a_token_is_stored(aws: Any) -> None:
    value = tokens.create_token(Store(), "ci")
    items = _items(aws)
    assert len(items) == 1
    assert value not in str(items)
    assert items[0]["pk"] == "TOKEN#" + hashlib.sha256(value.encode()).hexdigest()


def test_authenticate_accepts_the_token_and_refuses_near_misses(aws: Any) -> None:
    store = Store()
    value = tokens.create_token(store, "ci")
    assert tokens.authenticate(store, f"Bearer {value}").name == "ci"  # type: ignore[union-attr]
    assert tokens.authenticate(store, f"bearer {value}") is not None
    assert tokens.authenticate(store, f"Bearer {value[:-1]}x") is None
    assert tokens.authenticate(store, value) is None  # no scheme
    assert tokens.authenticate(store, "Basic abc") is None
    assert tokens.authenticate(store, None) is None
    assert tokens.authenticate(store, "Bearer ") is None


def test_revoked_token_no_longer_authenticates(aws: Any) -> None:
    store = Store()
    keep = tokens.create_token(store, "keep")
    gone = tokens.create_token(store, "gone")
    assert tokens.revoke(store, name="gone") == 1
    assert tokens.authenticate(store, f"Bearer {gone}") is None
    assert tokens.authenticate(store, f"Bearer {keep}") is not None
    assert [t.name for t in store.list_tokens()] == ["keep"]
    assert tokens.revoke(store, name="gone") == 0


def test_cli_creates_lists_and_revokes(aws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert tokens.main(["create", "--name", "ops", "--token", "oc_given_token_value_123"]) == 0
    assert capsys.readouterr().out.strip() == "oc_given_token_value_123"
    assert tokens.main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "ops" in listing and "oc_given_token_value_123" not in listing
    prefix = hashlib.sha256(b"oc_given_token_value_123").hexdigest()[:10]
    assert tokens.main(["revoke", "--hash", prefix]) == 0
    assert tokens.main(["revoke", "--name", "ops"]) == 1


def test_too_short_token_is_refused(aws: Any) -> None:
    with pytest.raises(ValueError, match="at least 16"):
        tokens.create_token(Store(), "weak", "short")


def test_authorizer_allows_a_known_token(aws: Any, context: Any) -> None:
    import authorizer_handler

    tokens.create_token(Store(), "sample", "oc_sample_token_value_0000000000")
    answer = authorizer_handler.lambda_handler(load_event("authorizer_request"), context)
    assert answer == {"isAuthorized": True, "context": {"tokenName": "sample"}}


def test_authorizer_raises_unauthorized_for_an_unknown_token(aws: Any, context: Any) -> None:
    import authorizer_handler

    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorizer_handler.lambda_handler(load_event("authorizer_request"), context)
