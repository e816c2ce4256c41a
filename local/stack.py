"""Starts the whole local system: moto, resources from template.yaml, provider simulators,
the gateway and the pumps. `python -m local` runs it in the foreground.

moto server is a child process (local.moto_server), so that its request handling has an
interpreter and a core of its own; the gateway, the pumps and the simulators run in this one, and
the functions too, but for the SQS pumps' batches, which run in OUTCALL_LOCAL_PROCESSES worker
processes (local.workers; 2 by default, 0 keeps them here) so that a large import's chunks are
not held to this process's interpreter. `stop()` ends the children as well (and they end
themselves if this process dies)."""

from __future__ import annotations

import importlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.pumps import Pump, start_pumps
from local.template import REGION, ROOT, Stack

DEFAULT_GATEWAY_PORT = 3000
DEFAULT_AWS_PORT = 4566
DEFAULT_PROCESSES = 2  # worker processes for the SQS pumps' batches (OUTCALL_LOCAL_PROCESSES)
SIMULATOR_URL = "${simulator}"
STATE_DIR = ROOT / "local" / ".state"  # the running stack's dev token, for `make demo`


def providers_file() -> Path:
    return Path(os.environ.get("OUTCALL_PROVIDERS_FILE") or ROOT / "local" / "providers.json")


@dataclass
class LocalStack:
    gateway_port: int = int(os.environ.get("OUTCALL_PORT", DEFAULT_GATEWAY_PORT))
    aws_port: int = int(os.environ.get("OUTCALL_AWS_PORT", DEFAULT_AWS_PORT))
    dev_token: str = ""
    simulators: dict[str, Any] = field(default_factory=dict)
    pumps: list[Pump] = field(default_factory=list)

    moto: subprocess.Popen[bytes] | None = None
    gateway: Any = None
    workers: Any = None  # local.workers.WorkerPool, or None: every function in this process

    def start(self) -> LocalStack:
        endpoint = self.start_moto()
        os.environ.update(
            {
                "AWS_ENDPOINT_URL": endpoint,
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION,
                "POWERTOOLS_TRACE_DISABLED": "true",
                "POWERTOOLS_METRICS_DISABLED": "true",
                "POWERTOOLS_DEV": os.environ.get("POWERTOOLS_DEV", "false"),
            }
        )
        import boto3

        self.session = boto3.Session(region_name=REGION)
        self.stack = Stack(endpoint=endpoint)
        for layer in self.stack.layer_paths():  # what Lambda mounts on /opt/python
            if str(layer) not in sys.path:
                sys.path.insert(0, str(layer))
        gateway_url = f"http://127.0.0.1:{self.gateway_port}"
        settings = self.start_simulators(gateway_url)
        secret_id = next(iter(self.stack.of_type("AWS::SecretsManager::Secret")), None)
        self.stack.create_resources(self.session, {secret_id: json.dumps(settings)} if secret_id else None)
        self.stack.create_schedules(self.session)
        os.environ.update(self.stack.environment())

        from outcall.store import Store
        from outcall.tokens import create_token

        self.dev_token = create_token(Store(), "dev", os.environ.get("OUTCALL_DEV_TOKEN") or None)
        STATE_DIR.mkdir(exist_ok=True)
        (STATE_DIR / "dev-token").write_text(self.dev_token, encoding="utf-8")

        from local.gateway import Gateway
        from local.runtime import Runtime
        from local.workers import WorkerPool

        functions = self.stack.functions()
        processes = int(os.environ.get("OUTCALL_LOCAL_PROCESSES", str(DEFAULT_PROCESSES)))
        self.workers = WorkerPool(processes) if processes > 0 else None
        self.runtime = Runtime(functions, workers=self.workers)
        for fn in functions.values():
            self.runtime.handler(fn)  # import every handler now: a broken one fails the start
        authorizer_id = self.stack.authorizer_function()
        self.gateway = Gateway(self.runtime, functions[authorizer_id] if authorizer_id else None, self.gateway_port)
        self.gateway_thread = threading.Thread(target=self.gateway.serve_forever, name="gateway", daemon=True)
        self.gateway_thread.start()
        self.pumps = start_pumps(self.session, self.runtime)
        return self

    def start_moto(self, timeout: float = 60) -> str:
        """moto server as a child process on 127.0.0.1; its URL once it accepts connections."""
        with socket.socket() as probe:  # a server already there would answer for a child that failed
            try:
                probe.bind(("127.0.0.1", self.aws_port))
            except OSError as exc:
                raise RuntimeError(f"port {self.aws_port} for moto is taken (OUTCALL_AWS_PORT): {exc}") from None
        self.moto = subprocess.Popen(  # noqa: S603 - this interpreter, our module, a port number
            [sys.executable, "-m", "local.moto_server", "--port", str(self.aws_port)],
            cwd=ROOT,
            # its own session: a Ctrl-C at the terminal reaches this process only, which stops the
            # pumps before it stops moto
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.moto.poll() is not None:
                raise RuntimeError(f"moto server exited with {self.moto.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.aws_port), timeout=1):
                    return f"http://127.0.0.1:{self.aws_port}"
            except OSError:
                if time.monotonic() > deadline:
                    self.stop_moto()
                    raise RuntimeError(f"moto server not listening on {self.aws_port} after {timeout:.0f} s") from None
                time.sleep(0.1)

    def stop_moto(self, timeout: float = 10) -> None:
        if self.moto is None or self.moto.poll() is not None:
            return
        self.moto.terminate()
        try:
            self.moto.wait(timeout)
        except subprocess.TimeoutExpired:
            self.moto.kill()
            self.moto.wait()

    def start_simulators(self, gateway_url: str) -> dict[str, Any]:
        """Provider settings from the providers file; an entry whose baseUrl is "${simulator}"
        gets that provider's simulator, started here, with webhooks pointed at the gateway."""
        settings: dict[str, Any] = json.loads(providers_file().read_text(encoding="utf-8"))
        for key, entry in settings.items():
            if entry.get("baseUrl") != SIMULATOR_URL:
                continue
            module = importlib.import_module(f"local.simulators.{key}")
            # outcall's callback URLs (nxcloud's taskCallbackUrl, airudder's callback) and the
            # simulator's own pushes both point at this gateway
            entry.setdefault("webhookUrl", f"{gateway_url}/webhooks/{key}")
            simulator = module.SIMULATOR(port=0, settings=dict(entry)).start()
            self.simulators[key] = simulator
            entry["baseUrl"] = simulator.url
        return settings

    def stop(self) -> None:
        """Stop taking work (pumps, gateway), then the simulators, then moto. Work that a
        function has in hand is not waited for (`python -m local` exits right after)."""
        try:
            for pump in self.pumps:
                pump.stop()
            if self.gateway is not None:
                self.gateway.shutdown()
            if self.workers is not None:
                self.workers.stop()
            for simulator in self.simulators.values():
                simulator.stop()
        finally:
            self.stop_moto()

    def banner(self) -> str:
        lines = [
            "outcall is running on 127.0.0.1",
            f"  API          http://127.0.0.1:{self.gateway.port}",
            f"  Swagger UI   http://127.0.0.1:{self.gateway.port}/swagger",
            f"  OpenAPI      http://127.0.0.1:{self.gateway.port}/openapi.json",
            f"  AWS (moto)   http://127.0.0.1:{self.aws_port}",
        ]
        lines += [f"  {key:<12} {sim.url} (simulator)" for key, sim in sorted(self.simulators.items())]
        lines += [
            f"  dev token    {self.dev_token}",
            f'  try: curl -H "Authorization: Bearer {self.dev_token}" http://127.0.0.1:{self.gateway.port}/imports/x',
        ]
        return "\n".join(lines)
