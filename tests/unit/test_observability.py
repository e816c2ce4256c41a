from outcall.observability import mask_phone, mask_text, redact


def test_mask_phone_keeps_only_enough_to_tell_numbers_apart() -> None:
    assert mask_phone("+8613812345678") == "+861********78"
    assert "12345" not in mask_phone("+8613812345678")
    assert mask_phone("1234") == "****"


def test_mask_text_masks_every_number_in_free_text() -> None:
    text = mask_text("dial 13812345678 then +1 415-555-0101 for order 42")
    assert "13812345678" not in text and "555-0101" not in text
    assert "order 42" in text


def test_redact_hides_secrets_and_phone_fields_recursively() -> None:
    payload = {
        "token": "abcdef123456",
        "headers": {"Authorization": "Bearer oc_x"},
        "callList": [{"mobile": "18100000030", "name": "user1"}],
        "note": "call 18100000030",
    }
    out = redact(payload)
    assert out["token"] == "***(12)"
    assert out["headers"]["Authorization"].startswith("***")
    assert out["callList"][0]["mobile"] != "18100000030"
    assert out["callList"][0]["name"] == "user1"
    assert "18100000030" not in out["note"]
