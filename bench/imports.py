"""Benchmark: contact imports (outcall.imports) - the planner, one chunk worker, and an upload end to end.

Figures (written to bench/results/imports.json):

- ``plan_1m``: `Importer.plan` on a 1,000,000-row call list (bench.corpus.write_large_csv) in a fresh
  process: DynamoDB and SQS are moto in server mode in the parent process (the template's
  resources, reached over HTTP as a Lambda reaches AWS), so that the child's peak RSS
  (bench.memory) is the planner's own, as a Lambda worker would hold it; the task is an xswitch
  task stored with its provider task id, the provider is a real XSwitchProvider (the
  planner makes no HTTP call to it: counted), `send` collects the messages in a list, and the bucket
  keeps its objects as files in a temporary directory (the upload is read as an unseekable stream,
  as an S3 body is) so that moto's in-memory S3 does not count in the RSS. Wall seconds, rows/s,
  chunks and peak RSS (target <= 256 MB). Whether rows == accepted + duplicate + invalid is known
  only once the chunks are worked, so this reports rowsRead and the planned outcomes read back from
  the chunk files and the chunk markers (the numbers reserved).
- ``chunk_worker``: `Importer.work_chunk` on full chunks (`CHUNK_ROWS` rows) in a fresh process,
  against moto in process and the xswitch simulator over HTTP (local.simulators.xswitch on a free
  port, the provider settings pointing at it), with the time spent in each store / provider call
  and the DynamoDB calls per chunk. moto is far slower per write than DynamoDB (its put_item is
  measured alongside), so these seconds are an upper bound. ``arithmetic`` puts both together for a
  1,000,000-row file against Lambda's 900 s per invocation.
- ``e2e_100k``: an upload through the local stack (`python -m local` as a subprocess on free ports, as
  tests/e2e does): POST /tasks (xswitch), POST /tasks/{id}/uploads, PUT of the file to the presigned
  URL, then GET /imports/{id} until the job is completed, partial or failed. Seconds from the PUT to
  the end, rows/s and its ratio to the row pipeline (bench/results/row_pipeline.json), the job's
  counts (rows == accepted + duplicate + invalid checked) and the progress over time; the RSS of
  every process of the stack (moto server, and the gateway/pumps/functions process), sampled every
  second: the peak of each, of their sum, a timeline every 10 s and each process's CPU seconds.
  If the requested size does not finish within the timeout, the progress so far and a projection
  are reported (``finished: false``) and a smaller size is measured as well (--e2e-fallback-rows).
  Targets (issue 17): 100,000 rows at >= 2,500 rows/s with <= 1 GB for the whole stack.
- ``e2e_1m``: the same with 1,000,000 rows (wall time, peak RSS, rows == accepted + duplicate +
  invalid, the memory at a quarter of the run and at the end); given up after --e2e-1m-timeout
  seconds. Target: within 900 s, memory flat.

    python -m bench.imports [--plan-rows N] [--chunks N] [--e2e-rows N] [--e2e-timeout S]
                            [--e2e-1m-rows N] [--e2e-1m-timeout S] [--skip NAME ...] [--only NAME ...]
    python -m bench.imports --only e2e e2e1m     # the local-stack uploads alone

(PYTHONPATH=layers/outcall, as `make bench` sets it.) With the defaults the whole run takes about 25
minutes or more, most of it the uploads through the local stack. `--skip plan chunk e2e e2e1m` names
the sections not to measure (`--only` the ones to measure): the others keep their figures from the
existing results file (each section says when it was measured) and `arithmetic` is worked out again.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from unittest import mock

from bench import ENVIRONMENT
from bench._stack import DEV_TOKEN, ROOT, child_env, start_local_stack, stop_local_stack
from bench.corpus import write_large_csv
from bench.memory import peak_rss_mb
from local.spawn import free_port

RESULTS = ROOT / "bench" / "results" / "imports.json"
LAMBDA_TIMEOUT_S = 900
RSS_TARGET_MB = 256
PLAN_PROVIDER_SETTINGS = {"xswitch": {"baseUrl": "http://127.0.0.1:9", "login": "bench", "password": "bench"}}
MOTO_NOTES = [
    "Stock moto's transact_write_items deep-copies every table it touches, once per item of the"
    " transaction, and keeps every copy (BaseModel.instances_tracked): its cost and memory grow with the"
    " table. The local stack's moto process and these benchmarks' moto run with local.moto_bounded,"
    " which copies only the items a transaction names and keeps no instance history.",
    "moto runs in the measuring process (or in the local stack's process) and shares its CPU with the"
    " code measured; the machine was shared with other work (load averages are recorded).",
]
FINAL = ("completed", "partial", "failed")
E2E_1M_TIMEOUT_S = 1200  # the target is 900 s; a little more shows how far it is


def _run_child(kind: str, *args: str, timeout: float = 3600) -> dict[str, Any]:
    """Run `python -m bench.imports --child kind ...` in a fresh interpreter; its figures come back in a file."""
    with tempfile.NamedTemporaryFile("r", suffix=".json", prefix="outcall-bench-") as out:
        done = subprocess.run(
            [sys.executable, "-m", "bench.imports", "--child", kind, "--out", out.name, *args],
            capture_output=True,
            text=True,
            env=child_env(),
            cwd=str(ROOT),
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{kind} child failed ({done.returncode}): {done.stderr[-4000:] or done.stdout[-4000:]}")
        result: dict[str, Any] = json.loads(Path(out.name).read_text(encoding="utf-8"))
    return result


def _moto_stack(provider_settings: dict[str, Any], endpoint: str = "https://sqs.us-east-1.amazonaws.com") -> Any:
    """In the process moto runs in (mock_aws, or a moto server at `endpoint`): the template's
    tables, buckets and queues, and the functions' environment."""
    import boto3

    from local.moto_atomic import make_dynamodb_writes_atomic
    from local.moto_bounded import bound_moto_memory
    from local.template import Stack

    bound_moto_memory()  # as the local stack's moto process does
    make_dynamodb_writes_atomic()  # as the tests and the local stack do
    stack = Stack(endpoint=endpoint)
    stack.create_resources(boto3.Session(region_name="us-east-1"), {"ProviderSecret": json.dumps(provider_settings)})
    os.environ.update(stack.environment())
    return stack


def _store_task(store: Any, provider_task_id: str) -> Any:
    from outcall.models import Task

    now = datetime.now(UTC)
    task = Task(
        task_id=f"bench-{os.getpid()}",
        name="bench import",
        provider="xswitch",
        type="auto",
        status="ready",
        provider_task_id=provider_task_id,
        created_at=now,
        updated_at=now,
    )
    assert store.create_task(task, max_tasks=1000, pending=None)
    return task


def _queued_job(store: Any, task_id: str, key: str) -> str:
    from outcall.imports import new_import_id
    from outcall.models import ImportJob

    now = datetime.now(UTC)
    import_id = new_import_id()
    job = ImportJob(
        import_id=import_id,
        task_id=task_id,
        source="s3",
        status="queued",
        object_key=key.replace("<importId>", import_id),
        filename=Path(key).name,
        created_at=now,
        updated_at=now,
    )
    assert store.create_import(job)
    return import_id


# ---------------------------------------------------------------- 1. the planner on 1,000,000 rows


class _Unseekable(io.RawIOBase):
    """A file read the way an S3 body is: forward only."""

    def __init__(self, handle: io.BufferedReader) -> None:
        self._handle = handle

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._handle.readinto(buffer)

    def close(self) -> None:
        self._handle.close()
        super().close()


def _file_bucket(root: Path) -> Any:
    """A CallListBucket whose objects are files under `root` (chunk files on disk, not in moto's memory)."""
    from outcall.bucket import CallListBucket
    from outcall.errors import NotFound

    class FileBucket(CallListBucket):
        def __init__(self) -> None:
            super().__init__("bench-files")
            self.root = root
            self.puts = 0
            self.put_bytes = 0

        def _path(self, key: str) -> Path:
            return self.root / key

        def open(self, key: str, version: str | None = None) -> tuple[IO[bytes], int]:
            path = self._path(key)
            if not path.is_file():
                raise NotFound(f"the uploaded file {key!r} is gone")
            return _Unseekable(path.open("rb")), path.stat().st_size  # type: ignore[return-value]

        def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
            path = self._path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            self.puts += 1
            self.put_bytes += len(data)

        def read(self, key: str) -> bytes:
            return self._path(key).read_bytes()

        def body(self, key: str) -> IO[bytes]:
            return self._path(key).open("rb")

        def upload(self, key: str, parts: Iterable[bytes | IO[bytes]], content_type: str) -> None:
            path = self._path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("wb") as out:
                for part in parts:
                    if isinstance(part, bytes):
                        out.write(part)
                    else:
                        shutil.copyfileobj(part, out, 1 << 20)
                        part.close()

    return FileBucket()


def _plan_child(directory: str, key: str, source: str, endpoint: str) -> dict[str, Any]:
    """In a fresh process: put `source` where the job's key says under `directory`, plan it and
    report time, RSS and what was planned. AWS is the moto server at `endpoint` (not in this process)."""
    os.environ.update(ENVIRONMENT)
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    from outcall.imports import CHUNK_ROWS, Importer, ImportMessage, chunk_key
    from outcall.providers import get_provider
    from outcall.store import Store

    from local.template import Stack

    os.environ.update(Stack(endpoint=endpoint).environment())  # the resources: made by the parent
    settings = PLAN_PROVIDER_SETTINGS
    store = Store()
    task = _store_task(store, provider_task_id="1")
    import_id = _queued_job(store, task.task_id, key)
    job = store.get_import(import_id)
    assert job is not None and job.object_key
    root = Path(directory)
    (root / job.object_key).parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, root / job.object_key)
    bucket = _file_bucket(root)
    http_calls: list[str] = []

    def providers(name: str) -> Any:
        provider: Any = get_provider(name, settings)
        request = provider.http.request

        def counted(method: str, path: str, *args: Any, **kwargs: Any) -> Any:
            http_calls.append(f"{method} {path}")
            return request(method, path, *args, **kwargs)

        provider.http.request = counted
        return provider

    messages: list[ImportMessage] = []
    importer = Importer(store, bucket, providers, messages.append)
    rss_before = peak_rss_mb()
    started = time.perf_counter()
    cpu = time.process_time()
    importer.plan(import_id)
    cpu = time.process_time() - cpu
    seconds = time.perf_counter() - started
    peak = peak_rss_mb()

    job = store.get_import(import_id)
    assert job is not None and job.chunks is not None
    planned: Counter[str] = Counter()
    reserved = 0
    over_limit = 0
    # after the peak was taken: the planner's number -> first row dict, rebuilt to weigh it
    tracemalloc.start()
    seen: dict[str, int] = {}
    for n in range(job.chunks):
        for line in bucket.read(chunk_key(import_id, n)).decode().splitlines()[1:]:
            row, status, e164, *_ = json.loads(line)
            planned[status] += 1
            if status == "accepted":
                seen.setdefault(e164, row)
        marker = store.get_chunk(import_id, n) or {}
        reserved += int(marker.get("reserved", 0))
        over_limit += 1 if marker.get("overLimit") else 0
    seen_mb = round(tracemalloc.get_traced_memory()[0] / 2**20, 1)
    tracemalloc.stop()
    file_bytes = (root / (job.object_key or "")).stat().st_size
    steps = Counter(m.step for m in messages)
    rows = sum(planned.values())
    return {
        "rows_read": job.rows_read,
        "chunks": job.chunks,
        "chunk_rows": CHUNK_ROWS,
        "status_after_plan": job.status,
        "error": job.error,
        "file_mb": round(file_bytes / 2**20, 1),
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 2),
        "rows_per_s": round(job.rows_read / seconds),
        "peak_rss_mb": peak,
        "rss_before_plan_mb": rss_before,
        "rss_growth_in_plan_mb": round(peak - rss_before, 1),
        "rss_target_mb": RSS_TARGET_MB,
        "within_rss_target": peak <= RSS_TARGET_MB,
        "seen_numbers_dict_mb": seen_mb,
        "seen_numbers": len(seen),
        "planned": {
            "rows_in_chunk_files": rows,
            "accepted": planned["accepted"],
            "duplicate_in_file": planned["duplicate"],
            "invalid": planned["invalid"],
            "numbers_reserved": reserved,
            "chunks_over_limit": over_limit,
            "rows_in_chunk_files_equal_rows_read": rows == job.rows_read,
            "reserved_equals_accepted": reserved == planned["accepted"],
        },
        "messages_sent": dict(steps),
        "chunk_files_mb": round(bucket.put_bytes / 2**20, 1),
        "provider_http_calls": len(http_calls),
    }


def _handler_baseline_mb() -> float:
    """Peak RSS of a fresh process that has imported the contact_import handler and the xswitch
    provider (what a Lambda worker holds before its first message), without moto."""
    code = (
        "import contact_import_handler, outcall.providers.xswitch, outcall.imports;"
        "from bench.memory import peak_rss_mb; print(peak_rss_mb())"
    )
    env = child_env()
    env["PYTHONPATH"] += os.pathsep + str(ROOT / "functions" / "contact_import")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def plan_1m(rows: int = 1_000_000) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="outcall-bench-plan-") as tmp:
        key = "imports/bench-task/<importId>/calllist.csv"
        path = Path(tmp) / "source.csv"
        mix = write_large_csv(path, rows)
        load = os.getloadavg()[0]
        # moto runs here, as a server: the measured child holds only what a Lambda worker would
        from moto.server import ThreadedMotoServer

        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        try:
            endpoint = f"http://127.0.0.1:{port}"
            # made here, where moto runs; patch.dict puts os.environ back as it was afterwards
            with mock.patch.dict(os.environ, {**ENVIRONMENT, "AWS_ENDPOINT_URL": endpoint}):
                _moto_stack(PLAN_PROVIDER_SETTINGS, endpoint)
            # the child names the import; it finds the file by the job's key (<importId> filled in)
            result = _run_child("plan", "--dir", tmp, "--key", key, "--source", str(path), "--endpoint", endpoint)
        finally:
            server.stop()
    baseline = _handler_baseline_mb()
    return {
        "rows": rows,
        "corpus_mix": mix,
        **result,
        "handler_baseline_rss_mb": baseline,
        "load_average_1m_at_start": round(load, 2),
        "notes": [
            "peak_rss_mb is the peak RSS (VmHWM) of the process that planned (moto ran as a server in another"
            " process): the planner's imports, boto3 clients, the seen-numbers dict and its buffers."
            " handler_baseline_rss_mb is a fresh process with contact_import_handler imported, for reference.",
            "seen_numbers_dict_mb: the planner's dict of every accepted number -> its first row"
            " (calllists.process_rows `seen`), rebuilt after the run and weighed with tracemalloc; it is"
            " most of the growth and grows with the file.",
            "cpu_seconds is the better guide to a Lambda with one vCPU when the machine is loaded"
            " (load_average_1m_at_start; cpus at the top level): wall seconds include waiting for a CPU.",
        ],
    }


# ---------------------------------------------------------------- 2. one chunk worker


def _timed(owner: Any, name: str, spent: dict[str, float]) -> None:
    """Replace owner.name by a wrapper that adds its wall time to spent[name]."""
    inner: Callable[..., Any] = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - started

    setattr(owner, name, wrapper)


def _chunk_child(chunks: int) -> dict[str, Any]:
    """In a fresh process: plan `chunks` full chunks, then work them one by one and time each."""
    os.environ.update(ENVIRONMENT)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    import boto3
    from moto import mock_aws
    from outcall.bucket import CallListBucket, reset_clients
    from outcall.imports import CHUNK_ROWS, Importer, ImportMessage
    from outcall.providers import get_provider
    from outcall.providers.base import TaskSpec
    from outcall.store import Store

    from local.simulators.xswitch import SIMULATOR

    entries = json.loads((ROOT / "local" / "providers.json").read_text(encoding="utf-8"))
    sim: Any = SIMULATOR(port=0, settings=dict(entries["xswitch"])).start()
    settings = {"xswitch": {**entries["xswitch"], "baseUrl": sim.url}}
    try:
        with mock_aws(), tempfile.TemporaryDirectory(prefix="outcall-bench-chunk-") as tmp:
            reset_clients()
            stack = _moto_stack(settings)
            store = Store()
            provider_task_id = get_provider("xswitch", settings).create_task(TaskSpec(name="bench chunk"))
            task = _store_task(store, provider_task_id)
            source = Path(tmp) / "calllist.csv"
            mix = write_large_csv(source, chunks * CHUNK_ROWS)
            import_id = _queued_job(store, task.task_id, f"imports/{task.task_id}/<importId>/calllist.csv")
            job = store.get_import(import_id)
            assert job is not None and job.object_key
            bucket = CallListBucket(stack.physical_name("CallListBucket"))
            bucket.put(job.object_key, source.read_bytes(), "text/csv")

            spent: dict[str, float] = {}

            def providers(name: str) -> Any:
                provider = get_provider(name, settings)
                _timed(provider, "add_contacts", spent)
                return provider

            messages: list[ImportMessage] = []
            importer = Importer(store, bucket, providers, messages.append)
            started = time.perf_counter()
            importer.plan(import_id)
            plan_seconds = time.perf_counter() - started
            job = store.get_import(import_id)
            assert job is not None and job.chunks == chunks, job

            for name in ("claim_contacts", "finish_chunk", "lease_chunk", "get_chunk"):
                _timed(store, name, spent)
            for name in ("read", "put"):
                _timed(bucket, name, spent)
            calls: Counter[str] = Counter()

            def count(event_name: str, **_: Any) -> None:
                calls[event_name.rsplit(".", 1)[-1]] += 1

            store.table.meta.client.meta.events.register("before-call.dynamodb", count)
            per_chunk: list[dict[str, Any]] = []
            for n in range(chunks):
                spent.clear()
                calls.clear()
                sim_before = len(sim.journal)
                load = os.getloadavg()[0]
                started = time.perf_counter()
                cpu = time.process_time()
                importer.work_chunk(import_id, n)
                cpu = time.process_time() - cpu
                seconds = time.perf_counter() - started
                imports_posted = [r for r in sim.journal[sim_before:] if r.path.endswith("/import")]
                per_chunk.append(
                    {
                        "chunk": n,
                        "seconds": round(seconds, 2),
                        "cpu_seconds": round(cpu, 2),
                        "rows_per_s": round(CHUNK_ROWS / seconds),
                        "load_average_1m_at_start": round(load, 2),
                        "dynamodb_calls": dict(sorted(calls.items())),
                        "provider_import_calls": len(imports_posted),
                        "seconds_in": {k: round(v, 2) for k, v in sorted(spent.items())},
                        "ms_per_write": {
                            "claim_contacts_put": round(1000 * spent["claim_contacts"] / max(1, calls["PutItem"]), 2),
                        },
                    }
                )
            finish_started = time.perf_counter()
            if any(m.step == "finish" for m in messages):
                importer.finish(import_id)
            finish_seconds = time.perf_counter() - finish_started
            job = store.get_import(import_id)
            assert job is not None
            at_provider = len(sim.tasks[int(provider_task_id)].numbers)

            client = boto3.client("dynamodb", region_name="us-east-1")
            table = stack.physical_name("Table")
            puts = []
            for i in range(500):
                begun = time.perf_counter()
                client.put_item(
                    TableName=table, Item={"pk": {"S": f"BENCH#{i}"}, "sk": {"S": "X"}, "v": {"S": "x" * 200}}
                )
                puts.append(time.perf_counter() - begun)
    finally:
        sim.stop()

    chunk_seconds = [c["seconds"] for c in per_chunk]
    counts = {"rows": job.rows, "accepted": job.accepted, "duplicate": job.duplicate, "invalid": job.invalid}
    return {
        "chunk_rows": CHUNK_ROWS,
        "chunks_worked": chunks,
        "corpus_mix": mix,
        "plan_seconds": round(plan_seconds, 2),
        "seconds_per_chunk": round(statistics.median(chunk_seconds), 2),
        "seconds_per_chunk_max": max(chunk_seconds),
        "rows_per_s": round(CHUNK_ROWS / statistics.median(chunk_seconds)),
        "per_chunk": per_chunk,
        "finish_seconds": round(finish_seconds, 2),
        "job": {
            "status": job.status,
            **counts,
            "rows_equal_outcomes": job.rows == job.accepted + job.duplicate + job.invalid == chunks * CHUNK_ROWS,
            "queued": job.accepted,
            "numbers_at_simulator": at_provider,  # 0: imports reach no provider, the dispatcher releases
            "reasons": dict(sorted(job.reasons.items())),
        },
        "moto_put_item_p50_ms": round(statistics.median(puts) * 1000, 2),
        "peak_rss_mb": peak_rss_mb(),
        "notes": [
            "seconds_in: wall time inside each store and bucket call. claim_contacts is one conditional"
            " PutItem per accepted row (the queued contact), 16 at a time (store.contacts.WRITE_THREADS);"
            " nothing reaches the provider at import (provider_import_calls 0): the dispatcher releases.",
            "moto_put_item_p50_ms: one plain PutItem, one thread, on the same moto after the chunks;"
            " ms_per_write is the effective time per write inside the chunk (threads, GIL and the moto"
            " write lock of local.moto_atomic included). moto is in this process and shares its CPU.",
        ],
    }


def chunk_worker(chunks: int = 2) -> dict[str, Any]:
    return _run_child("chunk", "--chunks", str(chunks))


# ---------------------------------------------------------------- 3. end to end through the local stack


def _proc_status_mb(pid: int, field: str) -> float | None:
    """VmRSS or VmHWM of a running process in MB (Linux), None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _descendants(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        kids = [p for p, parent in parents.items() if parent == current]
        found += kids
        frontier += kids
    return found


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _label(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return str(pid)
    args = [a.decode(errors="replace") for a in argv if a]
    module = args[args.index("-m") + 1] if "-m" in args[:-1] else " ".join(args[:2])
    labels = {
        "local": "gateway_pumps_functions",
        "local.moto_server": "moto_server",
        "local.workers": "function_workers",
    }
    return labels.get(module, module)


class _RssSampler(threading.Thread):
    """Samples the RSS of every process of the local stack (the `python -m local` process and
    its descendants) every `interval` seconds: the peak of each and of their sum, and a timeline."""

    def __init__(self, pid: int, interval: float = 1.0, timeline_every: float = 10.0) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pid, self.interval, self.timeline_every = pid, interval, timeline_every
        self.stopping = threading.Event()
        self.started_at = time.monotonic()
        self.peak: dict[str, float] = {}
        self.hwm: dict[str, float] = {}
        self.cpu: dict[int, tuple[str, float]] = {}  # pid -> (label, user + system CPU seconds)
        self.peak_total = 0.0
        self.samples = 0
        self.timeline: list[dict[str, Any]] = []

    def sample(self) -> dict[str, float]:
        now: dict[str, float] = {}
        for pid in [self.pid, *_descendants(self.pid)]:
            rss, hwm = _proc_status_mb(pid, "VmRSS"), _proc_status_mb(pid, "VmHWM")
            if rss is None:
                continue
            label = _label(pid)
            cpu = _cpu_seconds(pid)
            if cpu is not None:
                self.cpu[pid] = (label, cpu)
            now[label] = now.get(label, 0.0) + rss
            self.peak[label] = max(self.peak.get(label, 0.0), rss)
            if hwm is not None:
                self.hwm[label] = max(self.hwm.get(label, 0.0), hwm)
        self.peak_total = max(self.peak_total, sum(now.values()))
        self.samples += 1
        return now

    def run(self) -> None:
        next_point = 0.0
        while not self.stopping.is_set():
            now = self.sample()
            elapsed = time.monotonic() - self.started_at
            if elapsed >= next_point:
                self.timeline.append({"s": round(elapsed), "total_mb": round(sum(now.values()), 1), **now})
                next_point += self.timeline_every
            self.stopping.wait(self.interval)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds (user + system) of each process, the startup included, as last sampled."""
        out: dict[str, float] = {}
        for label, seconds in self.cpu.values():
            out[label] = round(out.get(label, 0.0) + seconds, 1)
        return dict(sorted(out.items()))

    def figures(self) -> dict[str, Any]:
        return {
            "sampled_every_s": self.interval,
            "samples": self.samples,
            "peak_total_mb": round(self.peak_total, 1),
            "peak_sampled_mb": {k: round(v, 1) for k, v in sorted(self.peak.items())},
            "peak_hwm_mb": {k: round(v, 1) for k, v in sorted(self.hwm.items())},
            "cpu_seconds": self.cpu_seconds(),
            "timeline": self.timeline,
        }


def _flatness(timeline: list[dict[str, Any]], progress: list[dict[str, Any]], chunk_rows: int) -> dict[str, Any]:
    """RSS of the whole stack at a quarter of the run and at its end, and the growth per 1,000 rows
    worked in between: what stays is the data (the contacts in moto's tables, the simulator's
    numbers); anything kept per request would show as growth beyond it."""
    if len(timeline) < 4:
        return {}
    quarter, last = timeline[len(timeline) // 4], timeline[-1]

    def chunks_by(second: float) -> int:
        return max([p["chunksDone"] for p in progress if p["s"] <= second] or [0])

    rows_between = (chunks_by(last["s"]) - chunks_by(quarter["s"])) * chunk_rows
    growth = round(last["total_mb"] - quarter["total_mb"], 1)
    figures: dict[str, Any] = {
        "total_mb_at_quarter": quarter["total_mb"],
        "total_mb_at_end": last["total_mb"],
        "growth_mb_from_quarter_to_end": growth,
        "rows_worked_from_quarter_to_end": rows_between,
    }
    if rows_between:
        figures["growth_mb_per_1000_rows"] = round(1000 * growth / rows_between, 2)
        for label in sorted(k for k in last if k not in ("s", "total_mb")):
            grown = last.get(label, 0.0) - quarter.get(label, 0.0)
            figures[f"{label}_mb_per_1000_rows"] = round(1000 * grown / rows_between, 2)
    return figures


def _chunk_rows() -> int:
    from outcall.imports import CHUNK_ROWS

    return int(CHUNK_ROWS)


def _pipeline_rows_per_s() -> int | None:
    path = ROOT / "bench" / "results" / "row_pipeline.json"
    if not path.exists():
        return None
    figure = json.loads(path.read_text(encoding="utf-8")).get("pipeline_rows_per_s")
    return int(figure) if figure else None


def _e2e_once(rows: int, timeout: float, directory: Path) -> dict[str, Any]:
    import requests

    path = directory / f"e2e_{rows}.csv"
    mix = write_large_csv(path, rows, seed=7)
    log = directory / f"stack_{rows}.log"
    auth = {"Authorization": f"Bearer {DEV_TOKEN}"}
    proc, url = start_local_stack(log)
    sampler = _RssSampler(proc.pid)
    try:
        rss_idle = sampler.sample()

        body = {"name": "bench import", "provider": "xswitch", "type": "auto"}
        created = requests.post(url + "/tasks", json=body, headers=auth, timeout=30)
        assert created.status_code == 201, created.text
        task_id = created.json()["taskId"]
        ticket = requests.post(
            url + f"/tasks/{task_id}/uploads", json={"filename": path.name}, headers=auth, timeout=30
        )
        assert ticket.status_code == 201, ticket.text
        import_id = ticket.json()["importId"]

        load_start = os.getloadavg()[0]
        sampler.start()
        started = time.monotonic()
        with path.open("rb") as handle:
            put = requests.put(ticket.json()["uploadUrl"], data=handle, timeout=300)
        assert put.status_code == 200, put.text
        put_seconds = time.monotonic() - started

        progress: list[dict[str, Any]] = []
        planned_at: float | None = None
        job: dict[str, Any] = {}
        last_done = -1
        while time.monotonic() - started < timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"local stack exited ({proc.returncode}) mid-import: {log.read_text()[-3000:]}")
            answer = requests.get(url + f"/imports/{import_id}", headers=auth, timeout=30)
            assert answer.status_code == 200, answer.text
            job = answer.json()
            elapsed = round(time.monotonic() - started, 1)
            if planned_at is None and job.get("chunks") is not None:
                planned_at = elapsed
            if job.get("chunksDone", 0) != last_done:
                last_done = job.get("chunksDone", 0)
                progress.append({"s": elapsed, "rowsRead": job.get("rowsRead"), "chunksDone": last_done})
            if job["status"] in FINAL:
                break
            time.sleep(1.0)
        seconds = time.monotonic() - started
        finished = job.get("status") in FINAL
        sampler.stopping.set()
        sampler.join()
        sampler.sample()  # the high-water marks as they are at the end
        report_rows = None
        if finished and job.get("reportUrl"):
            report = requests.get(job["reportUrl"], timeout=120)
            report_rows = report.content.count(b"\n") - 1 if report.status_code == 200 else None
    finally:
        sampler.stopping.set()
        stop_local_stack(proc)

    counts = {k: job.get(k, 0) for k in ("rows", "accepted", "duplicate", "invalid")}
    pipeline = _pipeline_rows_per_s()
    rows_per_s = round(rows / seconds) if finished else None
    memory = sampler.figures()
    result: dict[str, Any] = {
        "rows": rows,
        "corpus_mix": mix,
        "file_mb": round(path.stat().st_size / 2**20, 1),
        "finished": finished,
        "status": job.get("status"),
        "put_seconds": round(put_seconds, 2),
        "seconds_put_to_planned": planned_at,
        "seconds_put_to_finished": round(seconds, 1) if finished else None,
        "rows_per_s": rows_per_s,
        "row_pipeline_rows_per_s": pipeline,
        "ratio_to_row_pipeline": round(rows_per_s / pipeline, 4) if rows_per_s and pipeline else None,
        "chunks": job.get("chunks"),
        "chunks_done": job.get("chunksDone"),
        "counts": counts,
        "rows_equal_outcomes": counts["rows"] == counts["accepted"] + counts["duplicate"] + counts["invalid"] == rows,
        "queued": job.get("accepted"),
        "reasons": job.get("reasons"),
        "error": job.get("error"),
        "report_rows": report_rows,
        "stack_processes": len(sampler.cpu),  # every process the sampler saw (workers start with the first batch)
        "stack_rss_mb_after_start": {k: round(v, 1) for k, v in sorted(rss_idle.items())},
        "stack_rss_mb": {k: v for k, v in memory.items() if k != "timeline"},
        "memory_flatness": _flatness(memory["timeline"], progress, _chunk_rows()),
        "rss_timeline": memory["timeline"],
        "settings": {
            "OUTCALL_LOCAL_CONCURRENCY": os.environ.get("OUTCALL_LOCAL_CONCURRENCY", "4 (default)"),
            "OUTCALL_LOCAL_PROCESSES": os.environ.get("OUTCALL_LOCAL_PROCESSES", "2 (default)"),
        },
        "load_average_1m": {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)},
        "progress": progress,
        "notes": [
            "The local stack: moto server (local.moto_server), `python -m local` with the gateway, the pumps,"
            " the API functions and the provider simulators, and OUTCALL_LOCAL_PROCESSES worker processes"
            " (local.workers, 2 by default) working the SQS pumps' batches: the planner and the chunks. The"
            " SQS pump works up to OUTCALL_LOCAL_CONCURRENCY batches of the import queue at once (capped by"
            " the trigger's MaximumConcurrency); every DynamoDB write is an HTTP request to moto server.",
            "stack_rss_mb: peak_total_mb is the highest sum of the processes' RSS over the samples;"
            " peak_sampled_mb the highest RSS of each process sampled; peak_hwm_mb each process's own"
            " high-water mark (VmHWM) read by the sampler, the peak between samples included.",
            "seconds_put_to_finished runs from the start of the PUT of the file to the first poll (every"
            " second) that sees the job completed, partial or failed; it includes the S3 event, the"
            " planner, every chunk and the report.",
        ],
    }
    if not finished:
        result["timeout_s"] = timeout
        result["rows_counted_by_timeout"] = job.get("rows", 0)
        done = job.get("chunksDone") or 0
        if done and job.get("chunks"):
            result["projected_seconds"] = round(seconds * job["chunks"] / done)
    return result


def e2e(rows: int = 100_000, timeout: float = 1800, fallback_rows: int = 20_000) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="outcall-bench-e2e-") as tmp:
        first = _e2e_once(rows, timeout, Path(tmp))
        if first["finished"] or not fallback_rows or fallback_rows >= rows:
            return first
        smaller = _e2e_once(fallback_rows, timeout, Path(tmp))
    return {
        "note": f"{rows} rows did not finish within {timeout:.0f} s; measured at {fallback_rows} rows as well",
        "requested": first,
        "measured": smaller,
    }


def e2e_1m(rows: int = 1_000_000, timeout: float = E2E_1M_TIMEOUT_S) -> dict[str, Any]:
    """A 1,000,000-row upload through the local stack: wall time, peak RSS, every row accounted for.
    Given up after `timeout` seconds (the progress so far and a projection are reported)."""
    with tempfile.TemporaryDirectory(prefix="outcall-bench-e2e-1m-") as tmp:
        result = _e2e_once(rows, timeout, Path(tmp))
    result["target"] = {"seconds": 900, "memory": "flat"}
    result["within_900s"] = bool(result["finished"]) and (result["seconds_put_to_finished"] or 0) <= 900
    return result


# ---------------------------------------------------------------- together


def _arithmetic(plan: dict[str, Any], chunk: dict[str, Any], rows: int = 1_000_000) -> dict[str, Any]:
    from outcall.imports import CHUNK_ROWS
    from outcall.store.contacts import CONTACT_SHARDS

    chunks = -(-rows // CHUNK_ROWS)
    plan_s = plan.get("seconds")
    if plan_s is not None and plan.get("rows_read"):
        plan_s = round(plan_s * rows / plan["rows_read"], 1)
    chunk_s = chunk.get("seconds_per_chunk_max")
    batch = 5  # the Chunks trigger's BatchSize in template.yaml: one invocation may get 5 chunk messages
    # contact writes: the conditional PutItem of the queued contact (and any UpdateItem) per accepted
    # row, spread over CONTACT_SHARDS partition keys (CONTACTS#<taskId>#<shard>)
    worked = chunk.get("per_chunk") or []
    contact_writes = sum(
        c["dynamodb_calls"].get("PutItem", 0) + c["dynamodb_calls"].get("UpdateItem", 0) for c in worked
    )
    accepted_worked = (chunk.get("job") or {}).get("accepted") or 0
    per_accepted = contact_writes / accepted_worked if accepted_worked else None
    accepted_in_file = (plan.get("planned") or {}).get("accepted")
    writes = round(per_accepted * accepted_in_file) if per_accepted and accepted_in_file else None
    return {
        "rows": rows,
        "chunk_rows": CHUNK_ROWS,
        "chunks": chunks,
        "planner_seconds": plan_s,
        "planner_within_900s": plan_s is not None and plan_s < LAMBDA_TIMEOUT_S,
        "chunk_seconds": chunk_s,
        "chunk_within_900s": chunk_s is not None and chunk_s < LAMBDA_TIMEOUT_S,
        "sqs_batch_size": batch,
        "batch_of_chunks_seconds": round(chunk_s * batch, 1) if chunk_s else None,
        "batch_of_chunks_within_900s": chunk_s is not None and chunk_s * batch < LAMBDA_TIMEOUT_S,
        "planner_and_4_chunks_seconds": round(plan_s + 4 * chunk_s, 1) if plan_s and chunk_s else None,
        "all_chunks_one_worker_seconds": round(chunk_s * chunks, 1) if chunk_s else None,
        "contact_writes_per_accepted_row": round(per_accepted, 3) if per_accepted else None,
        "contact_writes_for_file": writes,
        "contact_partition_keys": CONTACT_SHARDS,
        "contact_writes_seconds_at_partition_bound": round(writes / (1000 * CONTACT_SHARDS), 1) if writes else None,
        "notes": [
            f"A {rows:,}-row file is {chunks} chunks of {CHUNK_ROWS:,} rows. The planner runs once, in one"
            " invocation (limit 900 s); every chunk is its own SQS message and chunks are worked in parallel"
            " by as many contact_import invocations as Lambda scales the queue to, so the time after"
            " planning is about (chunks / concurrent workers) x chunk seconds.",
            "The Chunks trigger has BatchSize 5: one invocation may be handed 5 chunk messages (or the plan"
            " message and 4 chunks) and works them one after another, so 5 x chunk seconds (plus the planner"
            " when it shares the batch) must fit in the 900 s too, not one chunk.",
            "Chunk seconds are measured against moto in process, much slower per write than DynamoDB"
            " (see chunk_worker.moto_put_item_p50_ms and its dynamodb_calls per chunk): an upper bound.",
            f"A task's contact writes spread over {CONTACT_SHARDS} partition keys (CONTACTS#<taskId>#<shard>,"
            " the shard a hash of the number, the hopper index alike). DynamoDB serves at most 1,000 write units"
            " per second per partition key, so contact_writes_seconds_at_partition_bound (contacts of up to 1 KB)"
            " is the floor DynamoDB sets on working the file: below the workers' own time.",
        ],
    }


def run(
    plan_rows: int = 1_000_000,
    chunks: int = 2,
    e2e_rows: int = 100_000,
    e2e_timeout: float = 1800,
    skip: tuple[str, ...] = (),
    e2e_1m_rows: int = 1_000_000,
    e2e_1m_timeout: float = E2E_1M_TIMEOUT_S,
    e2e_fallback_rows: int = 20_000,
) -> dict[str, Any]:
    """Measure each section not skipped and write the results file after each one. A skipped
    section keeps its figures from the existing results file (each says when it was measured)."""
    result: dict[str, Any] = {
        "benchmark": "imports",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "notes": MOTO_NOTES,
    }
    if skip and RESULTS.exists():
        previous = json.loads(RESULTS.read_text(encoding="utf-8"))
        result |= {k: v for k, v in previous.items() if k in ("plan_1m", "chunk_worker", "e2e_100k", "e2e_1m")}
    sections: dict[str, tuple[str, Callable[[], dict[str, Any]]]] = {
        "plan": ("plan_1m", lambda: plan_1m(plan_rows)),
        "chunk": ("chunk_worker", lambda: chunk_worker(chunks)),
        "e2e": ("e2e_100k", lambda: e2e(e2e_rows, e2e_timeout, e2e_fallback_rows)),
        "e2e1m": ("e2e_1m", lambda: e2e_1m(e2e_1m_rows, e2e_1m_timeout)),
    }

    def save() -> None:
        if "plan_1m" in result and "chunk_worker" in result:
            result["arithmetic"] = _arithmetic(result["plan_1m"], result["chunk_worker"])
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    for name, (key, measure) in sections.items():
        if name not in skip:
            result[key] = {"measured_at": datetime.now(UTC).isoformat(timespec="seconds"), **measure()}
            save()
    save()
    return result


SECTIONS = ["plan", "chunk", "e2e", "e2e1m"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plan-rows", type=int, default=1_000_000)
    parser.add_argument("--chunks", type=int, default=2, help="full chunks the chunk worker works, one by one")
    parser.add_argument("--e2e-rows", type=int, default=100_000)
    parser.add_argument("--e2e-timeout", type=float, default=1800, help="seconds from the PUT to give up")
    parser.add_argument(
        "--e2e-fallback-rows", type=int, default=20_000, help="measured as well if --e2e-rows times out (0: no)"
    )
    parser.add_argument("--e2e-1m-rows", type=int, default=1_000_000)
    parser.add_argument("--e2e-1m-timeout", type=float, default=E2E_1M_TIMEOUT_S)
    parser.add_argument("--skip", nargs="*", default=[], choices=SECTIONS)
    parser.add_argument("--only", nargs="*", default=[], choices=SECTIONS, help="measure these sections alone")
    parser.add_argument("--child", choices=["plan", "chunk"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        assert args.out
        if args.child == "plan":
            assert args.dir and args.key and args.source and args.endpoint
            figures = _plan_child(args.dir, args.key, args.source, args.endpoint)
        else:
            figures = _chunk_child(args.chunks)
        Path(args.out).write_text(json.dumps(figures), encoding="utf-8")
        return
    skip = tuple(args.skip) or tuple(name for name in SECTIONS if args.only and name not in args.only)
    result = run(
        args.plan_rows,
        args.chunks,
        args.e2e_rows,
        args.e2e_timeout,
        skip,
        args.e2e_1m_rows,
        args.e2e_1m_timeout,
        args.e2e_fallback_rows,
    )
    print(json.dumps(result, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
