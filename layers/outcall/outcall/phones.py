"""Phone parsing and E.164 normalisation.

Every phone decision is phonenumbers': this module only decides *which* string to hand to
`phonenumbers.parse` (and with which region) from a contact's fields, and turns the library's
verdict into either an E.164 string or a short, stable reason code with a human message.

The fields are those of a call list or of a conference callee (seeds/quanshi-event-call-add.txt):

- ``mobile`` with ``countryCode`` (``"86"``, ``"+86"``, ``"0086"``, ``"(86)"``, full-width too);
- ``phone`` with ``areaCode`` and ``countryCode``: a landline, the area code without its leading 0
  (``10`` + ``58512042`` is Beijing); an area code written with its 0 (``010``) works as well;
- a ``mobile`` or ``phone`` that starts with ``+`` (or full-width ``＋``) is already international:
  the country-code and area-code fields are then ignored;
- without a country code, the ``default_region`` (ISO 3166 alpha-2, e.g. ``"CN"``) applies.

When both ``mobile`` and ``phone`` are given, ``mobile`` is used (the seed: one or the other).
Spaces, dashes, dots, brackets and full-width digits in numbers are left to phonenumbers, which
strips and converts them itself; digit groups split by single spaces or dashes are handed over
without the separators (`_without_separators`), where phonenumbers reads the very same number with
less work. A number is valid when ``phonenumbers.is_valid_number``
says so; a number carrying an extension is refused (an extension cannot be dialled by a robot).

The fast path (`PhoneNormaliser.check`) is what the call-list pipeline runs per row: one parse,
one validity check, one E.164 string, country codes resolved once per distinct spelling, and an
input refused before (exactly the same fields) answered from memory.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, ValidationResult

__all__ = [
    "REASONS",
    "PhoneNormaliser",
    "PhoneReason",
    "PhoneResult",
    "normalise_callee",
    "normalise_number",
    "resolve_country_code",
]

_parse = phonenumbers.parse
_is_valid = phonenumbers.is_valid_number
_is_valid_for_region = phonenumbers.is_valid_number_for_region
_nsn = phonenumbers.national_significant_number
_PLUS_CHARS = frozenset("+\uff0b")  # '+' and full-width '＋', as phonenumbers' own _PLUS_CHARS
_NON_GEO_REGION = "001"  # what phonenumbers answers for +800, +870, ...
_UNKNOWN_REGION = phonenumbers.UNKNOWN_REGION


@dataclass(frozen=True, slots=True)
class PhoneReason:
    """Why a number was refused: a stable machine code and a message for people."""

    code: str
    message: str


#: The reason codes this module can give, with what each means.
REASONS: dict[str, str] = {
    "missing_number": "neither a mobile nor a phone number was given",
    "missing_country_code": "the number is not international (+...) and no country code or default region applies",
    "bad_country_code": "the country code is not a known country calling code",
    "bad_area_code": "the area code is not made of digits",
    "not_a_number": "the value does not look like a phone number",
    "too_short": "the number has too few digits",
    "too_long": "the number has too many digits",
    "invalid_number": "the number is not a valid number for its country",
    "has_extension": "the number carries an extension, which cannot be dialled",
}


def _reason(code: str, message: str | None = None) -> PhoneReason:
    return PhoneReason(code, message or REASONS[code])


MISSING_NUMBER = _reason("missing_number")
MISSING_COUNTRY_CODE = _reason("missing_country_code")
NOT_A_NUMBER = _reason("not_a_number")
HAS_EXTENSION = _reason("has_extension")
TOO_SHORT = _reason("too_short")
TOO_LONG = _reason("too_long")
LOCAL_ONLY = _reason("too_short", "the number looks local: its area code is missing")
UNKNOWN_CALLING_CODE = _reason("bad_country_code", "the number starts with an unknown country calling code")
BAD_LENGTH = _reason("invalid_number", "the number has a length no number of its country has")
SCIENTIFIC = _reason("not_a_number", "the number was written in scientific notation (e.g. 1.38E+10) by a spreadsheet")


@dataclass(frozen=True, slots=True)
class PhoneResult:
    """The public answer: `e164` when valid, else `reason` (a code of REASONS) and `message`."""

    e164: str | None
    reason: str | None = None
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.e164 is not None


# ---------------------------------------------------------------- country codes

# Calling code -> its only region. For such codes phonenumbers.is_valid_number is exactly
# is_valid_number_for_region(number, that region); looking it up here saves a call per row.
_SINGLE_REGION: dict[int, str] = {
    code: regions[0]
    for code, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items()
    if len(regions) == 1 and regions[0] != _NON_GEO_REGION
}
# Calling code -> "+code": E.164 is "+", the calling code, the national significant number.
_E164_PREFIX: dict[int, str] = {code: f"+{code}" for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE}


@dataclass(frozen=True, slots=True)
class _Country:
    region: str | None  # region to parse national numbers with; None for non-geographic codes
    prefix: str  # "+800": what non-geographic numbers are parsed after


def _clean_code(value: str) -> str | None:
    """'86', '+86', '0086', '(86)', '＋８６', ' 86 ' -> '86'; anything else -> None.

    Full-width and other Unicode digits are converted by phonenumbers' normalize_digits_only;
    only the decorations people put around a calling code are removed here.
    """
    text = phonenumbers.normalize_digits_only(value, keep_non_digits=True)
    text = text.strip().replace(" ", "").replace("\uff0b", "+")
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
    if text.startswith("+"):
        text = text[1:]
    elif text.startswith("00"):
        text = text[2:]
    if text.endswith(".0"):  # a spreadsheet number written back as text: 86.0
        text = text[:-2]
    if not text or not text.isascii() or not text.isdigit() or len(text) > 3:
        return None
    return text


def resolve_country_code(value: str) -> _Country | PhoneReason:
    """A country code as written by a person -> the region phonenumbers parses with, or a reason."""
    digits = _clean_code(value)
    if digits is None:
        return _reason("bad_country_code", f"country code {value.strip()!r} is not a country calling code")
    code = int(digits)
    region = phonenumbers.region_code_for_country_code(code)
    if region == _UNKNOWN_REGION:
        return _reason("bad_country_code", f"country code {value.strip()!r} is not a known country calling code")
    return _Country(None if region == _NON_GEO_REGION else region, f"+{code}")


def _validate_region(region: str | None) -> str | None:
    if region is None or region == "":
        return None
    upper = region.strip().upper()
    if upper not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown default region {region!r}: expected an ISO 3166 alpha-2 code such as 'CN'")
    return upper


# ---------------------------------------------------------------- failures


def _from_exception(exc: NumberParseException) -> PhoneReason:
    kind = exc.error_type
    if kind == NumberParseException.INVALID_COUNTRY_CODE:
        return UNKNOWN_CALLING_CODE
    if kind in (NumberParseException.TOO_SHORT_NSN, NumberParseException.TOO_SHORT_AFTER_IDD):
        return TOO_SHORT
    if kind == NumberParseException.TOO_LONG:
        return TOO_LONG
    return NOT_A_NUMBER


def _explain_invalid(number: phonenumbers.PhoneNumber) -> PhoneReason:
    """Only on the failure path: tell a short number from a long one from a wrong one."""
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible == ValidationResult.TOO_SHORT:
        return TOO_SHORT
    if possible == ValidationResult.TOO_LONG:
        return TOO_LONG
    if possible == ValidationResult.IS_POSSIBLE_LOCAL_ONLY:
        return LOCAL_ONLY
    if possible == ValidationResult.INVALID_COUNTRY_CODE:
        return UNKNOWN_CALLING_CODE
    if possible == ValidationResult.INVALID_LENGTH:
        return BAD_LENGTH
    region = phonenumbers.region_code_for_country_code(number.country_code or 0)
    return _reason("invalid_number", f"the number is not a valid number for +{number.country_code} ({region})")


def _not_a_number_or_scientific(text: str, reason: PhoneReason) -> PhoneReason:
    if reason.code in ("not_a_number", "too_short", "too_long", "invalid_number") and "e+" in text.lower():
        return SCIENTIFIC
    return reason


# ---------------------------------------------------------------- the normaliser


def _clean_area(value: str) -> str | PhoneReason:
    """'10', '010', '(010)', '１０' -> the digits; blank -> ''; anything else -> bad_area_code."""
    digits = phonenumbers.normalize_digits_only(value, keep_non_digits=True).strip().strip("()- ")
    if digits and not (digits.isascii() and digits.isdigit()):
        return _reason("bad_area_code", f"area code {value.strip()!r} is not made of digits")
    return digits


# Digit groups split by single spaces or hyphens: "+86 138 1234 5678", "138-1234-5678".
_SEPARATED = re.compile(r"\+?[0-9]+(?:[ -][0-9]+)+")
_REWRITTEN_MAX = 40  # longest number rewritten: phonenumbers refuses strings over 250 characters unread


def _without_separators(number: str) -> str:
    """`number` without its spaces and hyphens when phonenumbers reads the same number from both.

    That is so for ASCII digit groups split by single spaces or hyphens (an optional leading
    '+'), three digits or more, 40 characters at most: phonenumbers finds no extension, no
    RFC 3966 parameter and no second number in either string, finds both viable (three digits
    are enough with punctuation, two without, hence the minimum), and from there on works on the
    string normalised to its digits. Its regular expressions and its character-by-character
    normalisation (twice per parse) then have fewer characters to go through. Any other string
    is returned unchanged, to be read by phonenumbers as it is.
    """
    if len(number) <= _REWRITTEN_MAX and _SEPARATED.fullmatch(number):
        digits = number.replace(" ", "").replace("-", "")
        if len(digits) - (digits[0] == "+") >= 3:
            return digits
    return number


_REFUSED_CACHE_SIZE = 4096  # refused inputs a normaliser remembers: a few hundred KB at most


class PhoneNormaliser:
    """Normalises contact number fields; remembers per instance the country-code and area-code
    spellings it resolved and the exact inputs it refused.

    One instance per import (or per default region) is the intended use: `check` is the fast path.
    Call lists repeat their bad numbers (a placeholder such as "n/a", a short number copied down a
    column): phonenumbers refuses each distinct one once, later rows with exactly the same fields
    get the same reason from memory (at most `refused_cache_size` inputs, forgotten all at once
    when full). Valid numbers are not remembered: exact repeats of one are rare and far apart in a
    call list, and remembering every valid row measured slower than parsing the repeats again.

    Not thread-safe: phonenumbers parses into one PhoneNumber the instance reuses (the `numobj`
    argument of `phonenumbers.parse`), cleared before each parse; only strings leave `check`.
    `normalise_number` keeps one instance per thread.
    """

    __slots__ = ("_areas", "_countries", "_refused", "_refused_size", "_scratch", "default_region")

    def __init__(self, default_region: str | None = None, *, refused_cache_size: int = _REFUSED_CACHE_SIZE) -> None:
        self.default_region = _validate_region(default_region)
        # country-code spelling -> _Country or PhoneReason; "" is the default region
        self._countries: dict[str, _Country | PhoneReason] = {}
        self._areas: dict[str, str | PhoneReason] = {}  # area-code spelling -> digits or reason
        self._countries[""] = _Country(self.default_region, "") if self.default_region else MISSING_COUNTRY_CODE
        # (country_code, mobile, area_code, phone) exactly as given -> the reason it was refused
        self._refused: dict[tuple[str | None, str | None, str | None, str | None], PhoneReason] = {}
        self._refused_size = max(1, refused_cache_size)
        self._scratch = phonenumbers.PhoneNumber()  # what phonenumbers.parse fills (see above)

    def _country(self, value: str | None) -> _Country | PhoneReason:
        found = self._countries.get(value or "")
        if found is None:
            assert value is not None  # "" is always in the cache
            found = resolve_country_code(value) if value.strip() else self._countries[""]
            if len(self._countries) < 4096:  # free text in the column must not grow this forever
                self._countries[value] = found
        return found

    def check(  # noqa: C901 - the per-row hot path, kept in one frame: bench/row_pipeline.py measures it
        self, country_code: str | None, mobile: str | None, area_code: str | None = None, phone: str | None = None
    ) -> str | PhoneReason:
        """The E.164 string of the contact's number, or the reason it has none (the fast path)."""
        key = (country_code, mobile, area_code, phone)
        found = self._refused.get(key)
        if found is not None:
            return found
        if mobile and mobile.isdigit():  # digits only, the usual case: nothing to strip, no '+', no separators
            number = mobile
            plain = True
        else:
            number = mobile.strip() if mobile else ""
            if not number:
                landline = self._landline(area_code, phone)
                if isinstance(landline, PhoneReason):
                    return self._refuse(key, landline)
                number = landline
            plain = number.isdigit()
        if not plain and number[0] in _PLUS_CHARS:
            region = None  # international: the country code field does not apply
        else:
            country = self._countries.get(country_code)  # type: ignore[arg-type]
            if country is None:
                country = self._country(country_code)
            if country.__class__ is not _Country:
                return self._refuse(key, country)  # type: ignore[arg-type]
            region = country.region
            if region is None:  # a non-geographic calling code such as +800
                number = country.prefix + number
        if not plain and (" " in number or "-" in number):
            number = _without_separators(number)
        parsed = self._scratch
        parsed.clear()  # back to what a new PhoneNumber() holds
        try:
            _parse(number, region, numobj=parsed)
        except NumberParseException as exc:
            return self._refuse(key, _not_a_number_or_scientific(number, _from_exception(exc)))
        if parsed.extension:
            return self._refuse(key, HAS_EXTENSION)
        code: int = parsed.country_code  # type: ignore[assignment]
        region = _SINGLE_REGION.get(code)
        if _is_valid_for_region(parsed, region) if region else _is_valid(parsed):
            # E.164 is "+", the calling code and the national significant number: what
            # format_number(parsed, E164) answers, without its checks for numbers parse never gives.
            if parsed.italian_leading_zero:
                return _E164_PREFIX[code] + _nsn(parsed)
            return _E164_PREFIX[code] + str(parsed.national_number)
        return self._refuse(key, _not_a_number_or_scientific(number, _explain_invalid(parsed)))

    def _refuse(self, key: tuple[str | None, str | None, str | None, str | None], reason: PhoneReason) -> PhoneReason:
        refused = self._refused
        if len(refused) >= self._refused_size:
            refused.clear()  # bounded: many distinct bad numbers only cost the shortcut
        refused[key] = reason
        return reason

    def _landline(self, area_code: str | None, phone: str | None) -> str | PhoneReason:
        """The number to parse from the phone and area code fields, or why there is none."""
        number = phone.strip() if phone else ""
        if not number:
            return MISSING_NUMBER
        if number[0] in _PLUS_CHARS or not area_code:
            return number  # international (the area and country codes do not apply), or no area code
        digits = self._areas.get(area_code)
        if digits is None:
            digits = _clean_area(area_code)
            if len(self._areas) < 4096:
                self._areas[area_code] = digits
        if isinstance(digits, PhoneReason):
            return digits
        return digits + number

    def normalise(
        self,
        *,
        country_code: str | None = None,
        mobile: str | None = None,
        area_code: str | None = None,
        phone: str | None = None,
    ) -> PhoneResult:
        found = self.check(country_code, mobile, area_code, phone)
        if isinstance(found, str):
            return PhoneResult(found)
        return PhoneResult(None, found.code, found.message)


_PER_THREAD = threading.local()  # normalise_number's normalisers (a PhoneNormaliser is not thread-safe)


def _normaliser(default_region: str | None) -> PhoneNormaliser:
    normalisers: dict[str | None, PhoneNormaliser] | None = getattr(_PER_THREAD, "normalisers", None)
    if normalisers is None:
        normalisers = _PER_THREAD.normalisers = {}
    found = normalisers.get(default_region)
    if found is None:
        if len(normalisers) >= 32:  # the region comes from callers: keep a few per thread
            normalisers.clear()
        found = normalisers[default_region] = PhoneNormaliser(default_region)
    return found


def normalise_number(
    *,
    country_code: str | int | None = None,
    mobile: str | int | None = None,
    area_code: str | int | None = None,
    phone: str | int | None = None,
    default_region: str | None = None,
) -> PhoneResult:
    """Normalise one contact's number fields to E.164, or say why not.

    >>> normalise_number(country_code="86", mobile="138 1234 5678").e164
    '+8613812345678'
    >>> normalise_number(country_code="(86)", area_code="10", phone="58512042").e164
    '+861058512042'
    >>> normalise_number(mobile="12345").reason
    'missing_country_code'
    """
    return _normaliser(default_region).normalise(
        country_code=_text(country_code), mobile=_text(mobile), area_code=_text(area_code), phone=_text(phone)
    )


def normalise_callee(callee: object, default_region: str | None = None) -> PhoneResult:
    """The number of a `models.Callee` (anything with country_code/mobile/area_code/phone attributes)."""
    return normalise_number(
        country_code=getattr(callee, "country_code", None),
        mobile=getattr(callee, "mobile", None),
        area_code=getattr(callee, "area_code", None),
        phone=getattr(callee, "phone", None),
        default_region=default_region,
    )


def _text(value: str | int | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise TypeError("a phone field cannot be a boolean")
    return str(value)


# ---------------------------------------------------------------- numbers to and from providers


def dial_string(e164: str, dial_format: str = "e164") -> str:
    """How a provider wants a stored E.164 number written: `e164` as is, `national` as the
    digits of the national format (trunk prefix included, e.g. 01058512042), `digits` as the
    E.164 digits without the plus."""
    if dial_format == "e164":
        return e164
    if dial_format == "digits":
        return e164.lstrip("+")
    national = phonenumbers.format_number(phonenumbers.parse(e164, None), phonenumbers.PhoneNumberFormat.NATIONAL)
    return "".join(c for c in national if c.isdigit())


def provider_number_to_e164(number: str | None, region: str) -> str | None:
    """A number as a provider reports it (international with `+`, or national in `region`) in
    E.164; None when it cannot be read as a phone number."""
    if not number:
        return None
    try:
        parsed = phonenumbers.parse(number, None if number.startswith("+") else region)
    except NumberParseException:
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
