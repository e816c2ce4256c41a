"""outcall.phones: contact number fields -> E.164 or a stable reason."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import phonenumbers
import pytest
from outcall.models import Callee
from outcall.phones import REASONS, PhoneNormaliser, PhoneReason, PhoneResult, normalise_callee, normalise_number

BEIJING_LANDLINE = "+861058512042"
MOBILE = "+8613812345678"


# ---------------------------------------------------------------- the number forms that must work


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        # countryCode + mobile, every spelling of the code
        ({"country_code": "86", "mobile": "13812345678"}, MOBILE),
        ({"country_code": "+86", "mobile": "13812345678"}, MOBILE),
        ({"country_code": "0086", "mobile": "13812345678"}, MOBILE),
        ({"country_code": "(86)", "mobile": "13812345678"}, MOBILE),
        ({"country_code": " 86 ", "mobile": "13812345678"}, MOBILE),
        ({"country_code": "( 86 )", "mobile": "13812345678"}, MOBILE),
        ({"country_code": "86.0", "mobile": "13812345678"}, MOBILE),  # a spreadsheet number as text
        ({"country_code": 86, "mobile": 13812345678}, MOBILE),  # numbers, as JSON or XLSX may give them
        # separators people type
        ({"country_code": "86", "mobile": "138 1234 5678"}, MOBILE),
        ({"country_code": "86", "mobile": "138-1234-5678"}, MOBILE),
        ({"country_code": "86", "mobile": "138.1234.5678"}, MOBILE),
        ({"country_code": "86", "mobile": "(138) 1234-5678"}, MOBILE),
        ({"country_code": "86", "mobile": "  13812345678\t"}, MOBILE),
        # national prefix, country code or international prefix inside the number
        ({"country_code": "86", "mobile": "013812345678"}, MOBILE),
        ({"country_code": "86", "mobile": "8613812345678"}, MOBILE),
        ({"country_code": "86", "mobile": "008613812345678"}, MOBILE),
        # full-width digits, plus and spaces
        ({"country_code": "８６", "mobile": "１３８１２３４５６７８"}, MOBILE),
        ({"country_code": "＋８６", "mobile": "１３８　１２３４　５６７８"}, MOBILE),
        ({"mobile": "＋８６１３８１２３４５６７８"}, MOBILE),
        # already international: the country code field is not needed, and ignored
        ({"mobile": "+86 138 1234 5678"}, MOBILE),
        ({"country_code": "", "mobile": "+8613812345678"}, MOBILE),
        ({"country_code": "1", "mobile": "+86 138-1234-5678"}, MOBILE),
        ({"mobile": "+1 (650) 253-0000"}, "+16502530000"),
        # landlines: area code without its 0, with its 0, or inside the number
        ({"country_code": "86", "area_code": "10", "phone": "58512042"}, BEIJING_LANDLINE),
        ({"country_code": "86", "area_code": "010", "phone": "58512042"}, BEIJING_LANDLINE),
        ({"country_code": "(86)", "area_code": "(010)", "phone": "5851-2042"}, BEIJING_LANDLINE),
        ({"country_code": "86", "area_code": "１０", "phone": "５８５１２０４２"}, BEIJING_LANDLINE),
        ({"country_code": "86", "area_code": "29", "phone": "88888888"}, "+862988888888"),
        ({"country_code": "86", "phone": "010-58512042"}, BEIJING_LANDLINE),
        ({"country_code": "86", "area_code": "", "phone": "1058512042"}, BEIJING_LANDLINE),
        ({"area_code": "10", "phone": "+86 10 5851 2042"}, BEIJING_LANDLINE),  # + wins, area ignored
        # other countries
        ({"country_code": "852", "mobile": "9123 4567"}, "+85291234567"),
        ({"country_code": "886", "mobile": "0912 345 678"}, "+886912345678"),
        ({"country_code": "1", "mobile": "(650) 253-0000"}, "+16502530000"),
        ({"country_code": "44", "mobile": "07911 123456"}, "+447911123456"),
        ({"country_code": "39", "phone": "02 1234 5678"}, "+390212345678"),  # Italian leading zero kept
        ({"country_code": "800", "mobile": "1234 5678"}, "+80012345678"),  # non-geographic code
        # mobile wins when both are given
        ({"country_code": "86", "mobile": "13812345678", "area_code": "10", "phone": "58512042"}, MOBILE),
    ],
)
def test_valid_forms_give_e164(fields: dict, expected: str) -> None:
    result = normalise_number(**fields)
    assert result == PhoneResult(expected)
    assert result.ok
    # the answer is what phonenumbers itself formats for that number
    assert phonenumbers.format_number(phonenumbers.parse(expected), phonenumbers.PhoneNumberFormat.E164) == expected
    assert phonenumbers.is_valid_number(phonenumbers.parse(expected))


def test_default_region_applies_only_without_a_country_code() -> None:
    assert normalise_number(mobile="13812345678", default_region="CN").e164 == MOBILE
    assert normalise_number(mobile="13812345678", default_region="cn").e164 == MOBILE
    assert normalise_number(area_code="10", phone="58512042", default_region="CN").e164 == BEIJING_LANDLINE
    # an explicit country code beats the default region
    assert normalise_number(country_code="852", mobile="91234567", default_region="CN").e164 == "+85291234567"
    assert normalise_number(country_code="852", mobile="13812345678", default_region="CN").ok is False


def test_unknown_default_region_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="default region"):
        PhoneNormaliser("XX")
    with pytest.raises(ValueError, match="default region"):
        normalise_number(mobile="13812345678", default_region="China")


# ---------------------------------------------------------------- refusals and their reasons


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({}, "missing_number"),
        ({"country_code": "86"}, "missing_number"),
        ({"country_code": "86", "mobile": "   ", "phone": " "}, "missing_number"),
        ({"country_code": "86", "area_code": "10"}, "missing_number"),
        ({"mobile": "13812345678"}, "missing_country_code"),
        ({"area_code": "10", "phone": "58512042"}, "missing_country_code"),
        ({"country_code": "abc", "mobile": "13812345678"}, "bad_country_code"),
        ({"country_code": "99", "mobile": "13812345678"}, "bad_country_code"),  # no such calling code
        ({"country_code": "8 6 0 0", "mobile": "13812345678"}, "bad_country_code"),
        ({"country_code": "+", "mobile": "13812345678"}, "bad_country_code"),
        ({"country_code": "86-10", "mobile": "13812345678"}, "bad_country_code"),
        ({"mobile": "+999 1234 5678"}, "bad_country_code"),
        ({"country_code": "86", "mobile": "hello"}, "not_a_number"),
        ({"country_code": "86", "mobile": "n/a"}, "not_a_number"),
        ({"country_code": "86", "mobile": "-"}, "not_a_number"),
        ({"country_code": "86", "mobile": "1.38123E+10"}, "not_a_number"),
        ({"country_code": "86", "mobile": "1"}, "not_a_number"),
        ({"country_code": "86", "mobile": "138"}, "too_short"),
        ({"country_code": "86", "mobile": "138123"}, "too_short"),
        ({"country_code": "86", "area_code": "10", "phone": "123"}, "too_short"),
        ({"country_code": "86", "mobile": "138123456789012"}, "too_long"),
        ({"country_code": "86", "mobile": "1" * 20}, "too_long"),
        ({"country_code": "86", "mobile": "1901111456"}, "invalid_number"),  # ten digits, from the seed
        ({"country_code": "86", "mobile": "12812345678"}, "invalid_number"),  # no such mobile range
        ({"country_code": "1", "mobile": "555 0100 000"}, "invalid_number"),
        ({"country_code": "86", "area_code": "1a", "phone": "58512042"}, "bad_area_code"),
        ({"country_code": "86", "mobile": "13812345678 ext. 123"}, "has_extension"),
        ({"country_code": "86", "area_code": "10", "phone": "58512042 ext 9"}, "has_extension"),
    ],
)
def test_refusals_have_a_stable_reason(fields: dict, reason: str) -> None:
    result = normalise_number(**fields)
    assert result.e164 is None
    assert not result.ok
    assert result.reason == reason
    assert reason in REASONS
    assert result.message  # always something a person can read


def test_beijing_number_without_area_code_is_refused() -> None:
    assert normalise_number(country_code="86", phone="58512042").reason == "invalid_number"


def test_seed_failure_case_is_refused_as_the_provider_would() -> None:
    # seeds/quanshi-event-call-add.txt: 1901111456 comes back as failed
    result = normalise_callee(Callee(country_code="86", mobile="1901111456", name="测试"))
    assert result.reason == "invalid_number"
    assert "+86" in (result.message or "")


def test_callee_from_seed_example() -> None:
    callee = Callee(
        company="quanshi.com", country_code="86", mobile="18100000030", name="user1", area_code="", phone=""
    )
    assert normalise_callee(callee).e164 == "+8618100000030"
    landline = Callee(country_code="86", area_code="10", phone="58512042")
    assert normalise_callee(landline).e164 == BEIJING_LANDLINE


def test_local_only_number_says_the_area_code_is_missing() -> None:
    result = normalise_number(country_code="1", phone="253-0000")  # a US number without its area code
    assert result.reason == "too_short"
    assert "area code" in (result.message or "")


def test_scientific_notation_is_explained() -> None:
    result = normalise_number(country_code="86", mobile="1.38123E+10")
    assert "scientific" in (result.message or "")


def test_boolean_field_is_refused() -> None:
    with pytest.raises(TypeError):
        normalise_number(country_code="86", mobile=True)  # type: ignore[arg-type]


# ---------------------------------------------------------------- the fast path


def test_check_returns_a_string_or_a_reason() -> None:
    normaliser = PhoneNormaliser("CN")
    assert normaliser.check("86", "13812345678", "", "") == MOBILE
    assert normaliser.check(None, "13812345678") == MOBILE
    refused = normaliser.check("86", "138", "", "")
    assert isinstance(refused, PhoneReason)
    assert refused.code == "too_short"


def test_check_agrees_with_bare_phonenumbers_on_many_numbers() -> None:
    normaliser = PhoneNormaliser()
    for prefix in ("130", "139", "150", "158", "166", "177", "186", "199", "120", "100", "191"):
        for suffix in ("00000000", "12345678", "99999999"):
            national = prefix + suffix
            parsed = phonenumbers.parse(national, "CN")
            valid = phonenumbers.is_valid_number(parsed)
            expected = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) if valid else None
            found = normaliser.check("86", national, "", "")
            assert (found if isinstance(found, str) else None) == expected, national


def test_country_code_spellings_are_cached_but_bounded() -> None:
    normaliser = PhoneNormaliser()
    for i in range(5000):
        normaliser.check(f"x{i}", "13812345678", "", "")
    assert len(normaliser._countries) <= 4096
    assert normaliser.check("86", "13812345678", "", "") == MOBILE


def test_same_answer_from_cache_and_from_scratch() -> None:
    normaliser = PhoneNormaliser()
    first = normaliser.check("+86", "13812345678", "", "")
    again = normaliser.check("+86", "13912345678", "", "")
    assert first == MOBILE
    assert again == "+8613912345678"
    bad_first = normaliser.check("999", "13812345678", "", "")
    bad_again = normaliser.check("999", "13812345678", "", "")
    assert isinstance(bad_first, PhoneReason)
    assert bad_first == bad_again


# Fields (country_code, mobile, area_code, phone) as a call list gives them.
REFUSED_FIELDS = [
    ("86", "n/a", "", ""),
    ("86", "138123", "", ""),
    ("86", "1901111456", "", ""),
    ("86", "1.38123E+10", "", ""),
    ("86", "138 1234 5678 ext. 9", "", ""),
    ("999", "13812345678", "", ""),
    ("abc", "13812345678", "", ""),
    ("", "13812345678", "", ""),  # refused without a default region only
    ("86", "", "", ""),
    ("86", "", "10", "123"),
    ("86", "", "1a", "58512042"),
    ("", "+999 1234 5678", "", ""),
]
VALID_FIELDS = [
    ("86", "13812345678", "", ""),
    ("86", "138 1234 5678", "", ""),
    ("+86", "138-1234-5678", "", ""),
    ("", "+86 138 1234 5678", "", ""),
    ("1", "650 253 0000", "", ""),
    ("44", "7911 123456", "", ""),
    ("39", "", "", "02 1234 5678"),
    ("86", "", "10", "58512042"),
]


@pytest.mark.parametrize("region", [None, "CN", "US"])
def test_refused_inputs_are_remembered_and_answered_as_the_first_time(region: str | None) -> None:
    shared = PhoneNormaliser(region)
    for _ in range(3):
        for fields in REFUSED_FIELDS + VALID_FIELDS:
            assert shared.check(*fields) == PhoneNormaliser(region).check(*fields), fields
    # only refusals are remembered, each under the fields exactly as given
    fresh = PhoneNormaliser(region)
    refused = {fields for fields in REFUSED_FIELDS + VALID_FIELDS if isinstance(fresh.check(*fields), PhoneReason)}
    assert set(shared._refused) == refused
    assert all(isinstance(reason, PhoneReason) for reason in shared._refused.values())
    # a different spelling of a refused number is worked out, not taken from memory
    assert shared.check("86", " n/a ", "", "") == PhoneNormaliser(region).check("86", " n/a ", "", "")


def test_remembered_refusals_are_bounded() -> None:
    normaliser = PhoneNormaliser("CN", refused_cache_size=8)
    for i in range(100):
        found = normaliser.check("86", f"1{i:03d}", "", "")
        assert found == PhoneNormaliser("CN").check("86", f"1{i:03d}", "", "")
        assert len(normaliser._refused) <= 8
    assert normaliser.check("86", "13812345678", "", "") == MOBILE
    assert len(PhoneNormaliser("CN")._refused) == 0


def test_nothing_carries_over_from_one_number_to_the_next() -> None:
    # phonenumbers parses every number into the same PhoneNumber: each parse starts from scratch
    normaliser = PhoneNormaliser("CN")
    assert normaliser.check("86", "13812345678 ext. 123", "", "") == PhoneNormaliser("CN").check(
        "86", "13812345678 ext. 123", "", ""
    )
    assert normaliser.check("86", "13912345678", "", "") == "+8613912345678"  # no extension left over
    assert normaliser.check("39", "", "", "02 1234 5678") == "+390212345678"  # Italian leading zero
    assert normaliser.check("39", "312 345 6789", "", "") == "+393123456789"  # and none left over
    assert normaliser.check("86", "138", "", "") == PhoneNormaliser("CN").check("86", "138", "", "")
    assert normaliser.check("852", "9123 4567", "", "") == "+85291234567"


def _bare(text: str, region: str | None) -> str | None:
    """E.164 from phonenumbers alone (parse, is_valid_number, format_number), or None."""
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if parsed.extension or not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _written_forms(digits: str, rng: random.Random) -> list[str]:
    """The ways people write a number: as is, in groups with spaces or dashes, irregularly."""
    cuts = sorted(rng.sample(range(1, len(digits)), k=min(3, len(digits) - 1)))
    groups = [digits[i:j] for i, j in zip([0, *cuts], [*cuts, len(digits)], strict=True)]
    return [digits, " ".join(groups), "-".join(groups), " ".join(groups[:2]) + "-".join(["", *groups[2:]])]


def test_check_gives_what_phonenumbers_gives_for_written_forms() -> None:
    rng = random.Random(20240601)
    regions = {"86": "CN", "1": "US", "44": "GB", "852": "HK", "39": "IT", "81": "JP", "49": "DE"}
    normaliser = PhoneNormaliser()
    for code, region in regions.items():
        for _ in range(40):
            length = rng.choice([3, 5, 8, 9, 10, 11, 12])
            digits = rng.choice("0123456789"[1:]) + "".join(rng.choice("0123456789") for _ in range(length - 1))
            if rng.random() < 0.3:  # a national prefix
                digits = "0" + digits
            for text in _written_forms(digits, rng):
                found = normaliser.check(code, text, "", "")
                assert (found if isinstance(found, str) else None) == _bare(text, region), (code, text)
                international = "+" + code + " " + text
                found = normaliser.check("", international, "", "")
                assert (found if isinstance(found, str) else None) == _bare(international, None), international


def _outcome(text: str, region: str | None) -> tuple[object, ...]:
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        return ("refused", exc.error_type)
    return ("parsed", parsed, phonenumbers.is_valid_number(parsed))


def test_separators_are_removed_only_where_phonenumbers_reads_the_same_number() -> None:
    from outcall.phones import _without_separators

    assert _without_separators("+86 138 1234 5678") == "+8613812345678"
    assert _without_separators("138-1234-5678") == "13812345678"
    assert _without_separators("9123 4567") == "91234567"
    # left to phonenumbers: anything but single spaces or hyphens between ASCII digits
    for text in (
        "13812345678",
        "1 2",  # two digits: viable without the space, not with it
        "+1 2",
        "138  1234",
        "138 - 1234",
        "(138) 1234",
        "138.1234.5678",
        "+ 86 138",
        "１３８ １２３４",
        "138 1234 ext 5",
        "138 1234 #",
        "1 " * 30 + "1",  # long
    ):
        assert _without_separators(text) == text, text
    assert _outcome("1 2", "CN") != _outcome("12", "CN")  # why the three-digit minimum
    rng = random.Random(7)
    samples = ["1 23", "12 3", "+1 23", "+8 6", "0 0 8 6 1 3 8 1 2 3 4 5 6 7 8", "00-1-650-253-0000"]
    samples += ["86 138 1234 5678", "0 10 5851 2042", "+39 02 1234 5678", "+800 1234 5678", "+999 1234 5678"]
    for _ in range(300):
        groups = ["".join(rng.choice("0123456789") for _ in range(rng.randint(1, 5))) for _ in range(rng.randint(2, 5))]
        text = rng.choice(["", "+"]) + "".join(g + rng.choice(" -") for g in groups)[:-1]
        samples.append(text)
    for text in samples:
        cleaned = _without_separators(text)
        for region in ("CN", "US", "GB", "IT", "DE", "AU", None):
            assert _outcome(cleaned, region) == _outcome(text, region), (text, region)


FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


def test_every_region_gives_what_phonenumbers_gives() -> None:
    rng = random.Random(1)
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        normaliser = PhoneNormaliser(region)
        code = str(phonenumbers.country_code_for_region(region))
        for _ in range(12):
            digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(4, 12)))
            texts = [digits, "0" + digits, code + digits, "00" + code + digits, digits[:3] + " " + digits[3:]]
            texts += [(code + digits).translate(FULL_WIDTH), digits[:1], digits[:2], code[:1]]
            for text in texts:
                found = normaliser.check("", text, "", "")
                assert (found if isinstance(found, str) else None) == _bare(text, region), (region, text)


def test_normalise_number_is_safe_from_many_threads() -> None:
    from outcall.phones import _normaliser

    numbers = [f"13{i % 10}{i:08d}" for i in range(300)] + ["138123", "n/a", "13812345678 ext 1"]
    expected = [normalise_number(country_code="86", mobile=number) for number in numbers]

    def run(_: int) -> list[PhoneResult]:
        return [normalise_number(country_code="86", mobile=number) for number in numbers]

    with ThreadPoolExecutor(max_workers=6) as pool:
        for results in pool.map(run, range(12)):
            assert results == expected
        # one normaliser per thread: an instance parses into a PhoneNumber of its own
        here = _normaliser("CN")
        there = pool.submit(_normaliser, "CN").result()
    assert here is _normaliser("CN")
    assert there is not here


def test_dial_string_writes_a_number_the_way_a_provider_wants_it() -> None:
    from outcall.phones import dial_string

    assert dial_string("+8613800138000") == "+8613800138000"
    assert dial_string("+8613800138000", "national") == "13800138000"
    assert dial_string("+861058512042", "national") == "01058512042"
    assert dial_string("+14155550101", "digits") == "14155550101"


def test_provider_numbers_are_read_back_to_e164_or_none() -> None:
    from outcall.phones import provider_number_to_e164

    assert provider_number_to_e164("13800138000", "CN") == "+8613800138000"
    assert provider_number_to_e164("+14155550101", "CN") == "+14155550101"
    assert provider_number_to_e164("not a number", "CN") is None
    assert provider_number_to_e164("", "CN") is None
    assert provider_number_to_e164(None, "CN") is None
