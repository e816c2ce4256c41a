"""Call-list corpora for benchmarks and manual checks.

`write_large_csv(path, rows)` writes a realistic call list cheaply (no phonenumbers calls): mostly
+86 mobiles written in several ways, some Chinese landlines and foreign numbers, about 5 %
duplicates (the same number again, often written differently) and about 5 % invalid numbers.

`write_troublesome(directory)` writes the small files that break naive importers: BOM, GB18030,
semicolons, tabs, quoted newlines, ragged rows, formula injection, empty, header-only, binary,
mixed encodings, and XLSX files (a good one and a truncated copy).

    python -m bench.corpus DIR [--rows N]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

HEADER = ("name", "company", "countryCode", "mobile", "areaCode", "phone", "externalId", "city")

_CN_MOBILE_PREFIXES = (
    *range(130, 140),
    150,
    151,
    152,
    153,
    155,
    156,
    157,
    158,
    159,
    *range(180, 190),
    166,
    177,
    199,
)
_CN_AREAS = (("10", 8), ("21", 8), ("755", 8), ("20", 8), ("29", 8))
_CITIES = ("北京", "上海", "深圳", "广州", "西安", "Hangzhou", "Chengdu", "")
_COMPANIES = ("quanshi.com", "时代中国", "Acme Ltd", "示例科技有限公司", "")
_SURNAMES = "王李张刘陈杨黄赵吴周"


def _foreign(rng: random.Random) -> tuple[str, str]:
    """(countryCode, mobile) of a valid non-Chinese number."""
    kind = rng.randrange(5)
    if kind == 0:
        return "1", f"650 253 {rng.randrange(10000):04d}"
    if kind == 1:
        return "44", f"7911 123{rng.randrange(1000):03d}"
    if kind == 2:
        return "852", f"9123 {rng.randrange(10000):04d}"
    if kind == 3:
        return "65", f"9123 {rng.randrange(10000):04d}"
    return "81", f"90 1234 {rng.randrange(10000):04d}"


_INVALID = (
    ("86", "138123", "", ""),  # too short
    ("86", "1901111456", "", ""),  # ten digits: not a Chinese mobile
    ("86", "n/a", "", ""),  # not a number
    ("999", "13812345678", "", ""),  # unknown country code
    ("86", "", "", ""),  # no number at all
    ("86", "1.38123E+10", "", ""),  # a spreadsheet's scientific notation
    ("86", "", "10", "123"),  # landline too short
)


def _quote(value: str) -> str:
    if any(c in value for c in ',"\n\r'):
        return '"' + value.replace('"', '""') + '"'
    return value


def _valid_number(rng: random.Random, roll: float) -> tuple[str, str, str, str]:
    """(countryCode, mobile, areaCode, phone) of a valid number, spelled as `roll` (0.10-1) picks."""
    if roll < 0.84:
        return "86", f"{rng.choice(_CN_MOBILE_PREFIXES)}{rng.randrange(10**8):08d}", "", ""
    if roll < 0.89:
        m = f"{rng.choice(_CN_MOBILE_PREFIXES)}{rng.randrange(10**8):08d}"
        return "", f"+86 {m[:3]} {m[3:7]} {m[7:]}", "", ""
    if roll < 0.92:
        m = f"{rng.choice(_CN_MOBILE_PREFIXES)}{rng.randrange(10**8):08d}"
        return "+86", f"{m[:3]}-{m[3:7]}-{m[7:]}", "", ""
    if roll < 0.95:
        code, digits = rng.choice(_CN_AREAS)
        local = f"{rng.randrange(2, 9)}{rng.randrange(10 ** (digits - 1)):0{digits - 1}d}"
        return "86", "", code, local
    cc, mobile = _foreign(rng)
    return cc, mobile, "", ""


def write_large_csv(path: str | Path, rows: int = 1_000_000, *, seed: int = 20240601) -> dict[str, int]:
    """Write `rows` data rows (plus a header) to `path`; returns the planned mix."""
    rng = random.Random(seed)
    planned = {"valid": 0, "duplicate": 0, "invalid": 0}
    recent: list[tuple[str, str, str, str]] = []  # numbers already written, to repeat
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write(",".join(HEADER) + "\r\n")
        batch: list[str] = []
        for i in range(rows):
            roll = rng.random()
            if roll < 0.05 and recent:
                cc, mobile, area, phone = recent[rng.randrange(len(recent))]
                if mobile and not mobile.startswith("+") and cc == "86" and rng.random() < 0.5:
                    cc, mobile = "", "+86 " + mobile  # the same number, written internationally
                planned["duplicate"] += 1
            elif roll < 0.10:
                cc, mobile, area, phone = _INVALID[rng.randrange(len(_INVALID))]
                planned["invalid"] += 1
            else:
                planned["valid"] += 1
                cc, mobile, area, phone = _valid_number(rng, roll)
                if len(recent) < 50_000:
                    recent.append((cc, mobile, area, phone))
                elif rng.random() < 0.01:
                    recent[rng.randrange(len(recent))] = (cc, mobile, area, phone)
            name = rng.choice(_SURNAMES) + rng.choice(_SURNAMES)
            batch.append(
                ",".join(
                    (
                        name,
                        _quote(rng.choice(_COMPANIES)),
                        cc,
                        mobile,
                        area,
                        phone,
                        f"ext-{i}",
                        rng.choice(_CITIES),
                    )
                )
            )
            if len(batch) >= 10_000:
                out.write("\r\n".join(batch) + "\r\n")
                batch.clear()
        if batch:
            out.write("\r\n".join(batch) + "\r\n")
    return planned


def write_troublesome(directory: str | Path) -> dict[str, Path]:
    """Small files that break naive importers; returns name -> path."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {
        "utf8_bom_comma.csv": "\ufeffname,countryCode,mobile\r\nAda,86,13812345678\r\n".encode(),
        "utf8_semicolon.csv": b"Name;Mobile;CountryCode\nBob;13912345678;+86\n",
        "gb18030_tab.csv": "姓名\t手机\t国家码\t备注\n张三\t13712345678\t86\t老客户\n".encode("gb18030"),
        "embedded_newline.csv": b'name,mobile,note\n"Li\nSi",13612345678,"line1\nline2"\n',
        "fullwidth.csv": "name,countryCode,mobile\nWang,＋８６,１３５ １２３４ ５６７８\n".encode(),
        "ragged.csv": b"name,mobile,countryCode,city\nA,13512345678\nB,13512345679,86,X,extra\n",
        "injection.csv": b'name,mobile,countryCode\n=HYPERLINK("http://x"),13412345678,86\n@SUM(1),123,86\n',
        "landline.csv": "姓名,国家码,区号,座机\n赵六,(86),10,58512042\n".encode(),
        "empty.csv": b"",
        "header_only.csv": b"name,mobile\r\n",
        "no_number_column.csv": b"name,company\nAda,Acme\n",
        "binary.csv": bytes(range(256)) * 8,
        "latin1.csv": "name,mobile\nJos\xe9,13812345678\n\xff\xfe\x80,1\n".encode("latin-1"),
        "mixed_encoding.csv": b"name,mobile\n" + b"A,13812345678\n" * 6000 + "张,13812345670\n".encode("gb18030"),
    }
    paths: dict[str, Path] = {}
    for name, data in files.items():
        path = root / name
        path.write_bytes(data)
        paths[name] = path
    try:
        from openpyxl import Workbook
    except ImportError:  # pragma: no cover - openpyxl is a layer dependency
        return paths
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Contacts"
    sheet.append(["姓名", "国家码", "手机", "公司"])
    sheet.append(["张三", 86, 13812345678, "时代中国"])
    sheet.append(["Ada", "+44", "7911 123456", "Acme"])
    good = root / "contacts.xlsx"
    workbook.save(good)
    paths["contacts.xlsx"] = good
    truncated = root / "truncated.xlsx"
    data = good.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    paths["truncated.xlsx"] = truncated
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory")
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    root = Path(args.directory)
    paths = write_troublesome(root)
    planned = write_large_csv(root / "large.csv", args.rows)
    print(json.dumps({"large.csv": planned, "files": sorted(paths)}, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
