"""Benchmark: the call-list row pipeline against bare phonenumbers.

Figures (written to bench/results/row_pipeline.json):

- ``pipeline_rows_per_s``: a CSV file on disk opened with `open_call_list` and streamed through
  `process_rows` (decode, CSV parse, header mapping, number normalisation and validation, E.164,
  duplicate detection) with every outcome counted in `ImportCounts`;
- ``bare_rows_per_s``: a bare loop of ``phonenumbers.parse`` + ``phonenumbers.is_valid_number``
  over the very strings (and regions) the pipeline hands to phonenumbers, from a list in memory;
- ``ratio`` = pipeline / bare (target >= 0.9). Both are timed in the same process, interleaved,
  best of `repeats`, CPU time (time.process_time) so that other processes on the machine
  disturb the figure less;
- ``ratio_with_contacts``: the same with a `ContactSpec` (pydantic) built for every accepted row,
  which the handler does only for rows it sends on;
- ``peak_rss_mb``: peak RSS (bench.memory) of a fresh process streaming a 1,000,000-row CSV through the
  pipeline (target <= 256 MB), with its RSS after imports for reference.

    python -m bench.row_pipeline [--rows N] [--rss-rows N] [--repeats N]
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import phonenumbers
from outcall.calllists import ImportCounts, open_call_list, process_rows

from bench.corpus import write_large_csv
from bench.memory import peak_rss_mb

RESULTS = Path(__file__).resolve().parent / "results" / "row_pipeline.json"
_LAYER = Path(__file__).resolve().parent.parent / "layers" / "outcall"


def _bare_inputs(path: Path, default_region: str) -> list[tuple[str, str | None]]:
    """The (string, region) pairs that reach phonenumbers.parse for each row of the corpus."""
    pairs: list[tuple[str, str | None]] = []
    regions: dict[str, str | None] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = [h.lower() for h in next(reader)]
        i_cc, i_mobile, i_area, i_phone = (header.index(n) for n in ("countrycode", "mobile", "areacode", "phone"))
        for cells in reader:
            number = cells[i_mobile].strip() or (cells[i_area].strip() + cells[i_phone].strip())
            if number.startswith("+"):
                region = None
            else:
                cc = cells[i_cc]
                region = regions.get(cc)
                if region is None:
                    digits = phonenumbers.normalize_digits_only(cc).removeprefix("00")
                    region = phonenumbers.region_code_for_country_code(int(digits)) if digits else default_region
                    regions[cc] = region
            pairs.append((number, region))
    return pairs


def _time_bare(pairs: list[tuple[str, str | None]]) -> float:
    parse = phonenumbers.parse
    is_valid = phonenumbers.is_valid_number
    error = phonenumbers.NumberParseException
    start = time.process_time()
    for number, region in pairs:
        try:  # noqa: SIM105 - contextlib.suppress per row would be measured too
            is_valid(parse(number, region))
        except error:
            pass
    return time.process_time() - start


def _time_pipeline(path: Path, default_region: str, contacts: bool = False) -> tuple[float, ImportCounts]:
    counts = ImportCounts()
    add = counts.add
    start = time.process_time()
    with open(path, "rb") as handle, open_call_list(handle, filename=path.name) as call_list:
        if contacts:
            for outcome in process_rows(call_list, default_region=default_region):
                add(outcome)
                if outcome.status == "accepted":
                    outcome.contact  # noqa: B018 - the work being measured
        else:
            for outcome in process_rows(call_list, default_region=default_region):
                add(outcome)
    return time.process_time() - start, counts


def _rss_child(path: str, default_region: str) -> None:
    """Runs in a fresh process: stream `path` through the pipeline and print RSS figures."""
    before = peak_rss_mb()
    elapsed, counts = _time_pipeline(Path(path), default_region)
    peak = peak_rss_mb()
    print(
        json.dumps(
            {
                "rss_after_imports_mb": before,
                "peak_rss_mb": peak,
                "seconds": round(elapsed, 2),
                "rows": counts.rows,
                "accepted": counts.accepted,
                "duplicate": counts.duplicate,
                "invalid": counts.invalid,
            }
        )
    )


def _measure_rss(rows: int, directory: Path, default_region: str) -> dict[str, object]:
    path = directory / f"rss_{rows}.csv"
    write_large_csv(path, rows, seed=11)
    size_mb = round(path.stat().st_size / 2**20, 1)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(_LAYER), str(_LAYER.parent.parent), env.get("PYTHONPATH", "")) if p
    )
    done = subprocess.run(
        [sys.executable, "-m", "bench.row_pipeline", "--rss-child", str(path), "--region", default_region],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=str(_LAYER.parent.parent),
    )
    path.unlink()
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    result["file_mb"] = size_mb
    return result


def run(rows: int = 200_000, *, rss_rows: int = 1_000_000, repeats: int = 5, default_region: str = "CN") -> dict:
    """Measure the pipeline against bare phonenumbers; returns (and does not write) the figures."""
    with tempfile.TemporaryDirectory(prefix="outcall-bench-") as tmp:
        directory = Path(tmp)
        path = directory / "calllist.csv"
        planned = write_large_csv(path, rows)
        size_mb = path.stat().st_size / 2**20
        pairs = _bare_inputs(path, default_region)

        _time_bare(pairs[:5000])  # warm caches (metadata loading, regex compilation) for both
        _time_pipeline(path, default_region)
        bare_times: list[float] = []
        pipe_times: list[float] = []
        contact_times: list[float] = []
        counts = ImportCounts()
        for _ in range(repeats):
            gc.collect()
            bare_times.append(_time_bare(pairs))
            gc.collect()
            elapsed, counts = _time_pipeline(path, default_region)
            pipe_times.append(elapsed)
            gc.collect()
            contact_times.append(_time_pipeline(path, default_region, contacts=True)[0])
        assert counts.rows == counts.accepted + counts.duplicate + counts.invalid == rows
        bare = rows / min(bare_times)
        pipeline = rows / min(pipe_times)
        with_contacts = rows / min(contact_times)

        rss = _measure_rss(rss_rows, directory, default_region) if rss_rows else {}

    result = {
        "benchmark": "row_pipeline",
        "rows": rows,
        "file_mb": round(size_mb, 1),
        "planned_mix": planned,
        "counts": {
            "rows": counts.rows,
            "accepted": counts.accepted,
            "duplicate": counts.duplicate,
            "invalid": counts.invalid,
            "reasons": dict(sorted(counts.reasons.items())),
        },
        "bare_rows_per_s": round(bare),
        "pipeline_rows_per_s": round(pipeline),
        "ratio": round(pipeline / bare, 3),
        "ratio_target": 0.9,
        "pipeline_with_contacts_rows_per_s": round(with_contacts),
        "ratio_with_contacts": round(with_contacts / bare, 3),
        "repeats": repeats,
        "times_s": {
            "bare": [round(t, 3) for t in bare_times],
            "pipeline": [round(t, 3) for t in pipe_times],
            "pipeline_with_contacts": [round(t, 3) for t in contact_times],
        },
        "rss": {"rows": rss_rows, **rss, "target_mb": 256},
        "python": platform.python_version(),
        "phonenumbers": phonenumbers.__version__,
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rss-rows", type=int, default=1_000_000, help="0 skips the RSS run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--region", default="CN")
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        _rss_child(args.rss_child, args.region)
        return
    result = run(args.rows, rss_rows=args.rss_rows, repeats=args.repeats, default_region=args.region)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
