"""Starts the whole local system: moto, resources from template.yaml, provider simulators,
the gateway and the pumps. `python -m local` runs it in the foreground."""

from __future__ import annotations

import importlib
import json
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.pumps import Pump, start_pumps
from local.template import REGION, ROOT, Stack

DEFAULT_GATEWAY_PORT = 3000
DEFAULT_AWS_PORT = 4566
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

    def start(self) -> LocalStack:
        import logging

        from moto.server import ThreadedMotoServer

        from local.moto_atomic import make_dynamodb_writes_atomic
        from local.moto_s3 import keep_put_bodies

        make_dynamodb_writes_atomic()
        keep_put_bodies()  # a PUT's body is the object whatever its Content-Type, as in S3

        logging.getLogger("werkzeug").setLevel(logging.ERROR)

        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=self.aws_port, verbose=False)
        self.moto.start()
        endpoint = f"http://127.0.0.1:{self.aws_port}"
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

        functions = self.stack.functions()
        self.runtime = Runtime(functions)
        for fn in functions.values():
            self.runtime.handler(fn)  # import every handler now: a broken one fails the start
        authorizer_id = self.stack.authorizer_function()
        self.gateway = Gateway(self.runtime, functions[authorizer_id] if authorizer_id else None, self.gateway_port)
        self.gateway_thread = threading.Thread(target=self.gateway.serve_forever, name="gateway", daemon=True)
        self.gateway_thread.start()
        self.pumps = start_pumps(self.session, self.runtime)
        return self

    def start_simulators(self, gateway_url: str) -> dict[str, Any]:
        """Provider settings from the providers file; an entry whose baseUrl is "${simulator}"
        gets that provider's simulator, started here, with webhooks pointed at the gateway."""
        settings: dict[str, Any] = json.loads(providers_file().read_text(encoding="utf-8"))
        for key, entry in settings.items():
            if entry.get("baseUrl") != SIMULATOR_URL:
                continue
            module = importlib.import_module(f"local.simulators.{key}")
            sim_settings = {"webhookUrl": f"{gateway_url}/webhooks/{key}", **entry}
            simulator = module.SIMULATOR(port=0, settings=sim_settings).start()
            self.simulators[key] = simulator
            entry["baseUrl"] = simulator.url
        return settings

    def stop(self) -> None:
        for pump in self.pumps:
            pump.stop()
        self.gateway.shutdown()
        for simulator in self.simulators.values():
            simulator.stop()
        self.moto.stop()

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
