"""template.yaml, read once for everything local: the resources to create in moto, and the
functions with their environment, HTTP routes and triggers. No second list of resources."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
STACK_NAME = "outcall"
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
PSEUDO = {
    "AWS::StackName": STACK_NAME,
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT_ID,
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::NoValue": None,
}


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form intrinsics (!Ref, !Sub, !GetAtt, ...)."""


def _tag(name: str):
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if name == "Fn::GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {name: value}

    return construct


for _short, _long in {
    "!Ref": "Ref",
    "!Sub": "Fn::Sub",
    "!GetAtt": "Fn::GetAtt",
    "!Join": "Fn::Join",
    "!If": "Fn::If",
    "!Equals": "Fn::Equals",
    "!Select": "Fn::Select",
    "!Split": "Fn::Split",
}.items():
    _CfnLoader.add_constructor(_short, _tag(_long))


def load(path: Path = TEMPLATE) -> dict[str, Any]:
    with path.open(encoding="utf-8") as fh:
        doc: dict[str, Any] = yaml.load(fh, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    return doc


@dataclass
class Route:
    method: str
    path: str
    authorized: bool
    pattern: re.Pattern[str] = field(init=False)
    params: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.params = re.findall(r"\{([^}+]+)\+?\}", self.path)
        regex = re.sub(r"\\\{[^}]+\\\+\\\}", "(.+)", re.escape(self.path))
        regex = re.sub(r"\\\{[^}]+\\\}", "([^/]+)", regex)
        self.pattern = re.compile(f"^{regex}$")

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def specificity(self) -> tuple[int, int]:
        """API Gateway prefers the most specific route: more literal segments first."""
        return (-self.path.count("/") + self.path.count("{"), -len(self.path))


@dataclass
class Function:
    logical_id: str
    name: str
    arn: str
    code_uri: Path
    handler: str
    timeout: int
    memory: int
    environment: dict[str, str]
    reserved_concurrency: int | None = None  # ReservedConcurrentExecutions
    routes: list[Route] = field(default_factory=list)
    # {queue_arn, batch_size, report_failures, max_concurrency (ScalingConfig.MaximumConcurrency or None)}
    sqs: list[dict[str, Any]] = field(default_factory=list)
    s3: list[dict[str, Any]] = field(default_factory=list)  # {bucket, events, prefix, suffix}
    schedules: list[dict[str, Any]] = field(default_factory=list)  # ScheduleV2 properties, resolved
    # EventInvokeConfig: attempts after the first of an asynchronous invocation (S3), and the
    # on-failure destination (an SQS queue ARN) of an event that failed them all
    async_retries: int = 2
    on_failure: str | None = None


RESERVED = "ReservedConcurrentExecutions"


def _int_or_none(value: Any) -> int | None:
    return None if value is None or value == "" else int(value)


class Stack:
    """The template with its intrinsics resolved against local physical names."""

    def __init__(self, doc: dict[str, Any] | None = None, endpoint: str = "http://127.0.0.1:5000") -> None:
        self.doc = doc or load()
        self.endpoint = endpoint.rstrip("/")
        self.resources: dict[str, dict[str, Any]] = self.doc.get("Resources", {})
        self.parameters = {k: str(v.get("Default", "")) for k, v in self.doc.get("Parameters", {}).items()}
        self.queue_urls: dict[str, str] = {}
        self.secret_arns: dict[str, str] = {}

    # ---------------------------------------------------------- names
    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.resources.items() if v.get("Type") == kind}

    def props(self, logical_id: str) -> dict[str, Any]:
        props: dict[str, Any] = self.resources[logical_id].get("Properties", {}) or {}
        return props

    def physical_name(self, logical_id: str) -> str:
        res = self.resources[logical_id]
        props = res.get("Properties", {}) or {}
        explicit = {
            "AWS::DynamoDB::Table": "TableName",
            "AWS::S3::Bucket": "BucketName",
            "AWS::SQS::Queue": "QueueName",
            "AWS::Serverless::Function": "FunctionName",
            "AWS::SecretsManager::Secret": "Name",
            "AWS::Scheduler::ScheduleGroup": "Name",
            "AWS::IAM::Role": "RoleName",
        }.get(res["Type"])
        if explicit and explicit in props:
            return str(self.resolve(props[explicit]))
        return f"{STACK_NAME}-{logical_id}"

    def ref(self, name: str) -> Any:
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.parameters:
            return self.parameters[name]
        kind = self.resources[name]["Type"]
        if kind == "AWS::SQS::Queue":
            return self.queue_urls.get(name) or f"{self.endpoint}/{ACCOUNT_ID}/{self.physical_name(name)}"
        if kind == "AWS::SecretsManager::Secret":
            return self.secret_arns.get(name) or self.physical_name(name)
        if kind == "AWS::Serverless::HttpApi":
            return "local"
        return self.physical_name(name)

    def get_att(self, name: str, attr: str) -> Any:
        kind = self.resources[name]["Type"]
        physical = self.physical_name(name)
        if attr == "Arn":
            service = {
                "AWS::SQS::Queue": f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{physical}",
                "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{physical}",
                "AWS::S3::Bucket": f"arn:aws:s3:::{physical}",
                "AWS::Serverless::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{physical}",
                "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT_ID}:role/{physical}",
                "AWS::Logs::LogGroup": f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:{physical}",
            }.get(kind)
            if service:
                return service
        if attr == "QueueName" and kind == "AWS::SQS::Queue":
            return physical
        if attr == "QueueUrl" and kind == "AWS::SQS::Queue":
            return self.ref(name)
        raise KeyError(f"local stack cannot resolve !GetAtt {name}.{attr}")

    def resolve(self, value: Any) -> Any:
        """Resolve CloudFormation intrinsics in a value."""
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            intrinsic = INTRINSICS.get(key)
            if intrinsic is not None:
                return intrinsic(self, arg)
        return {k: self.resolve(v) for k, v in value.items()}

    def _get_att(self, arg: Any) -> Any:
        name, attr = arg if isinstance(arg, list) else arg.split(".", 1)
        return self.get_att(name, attr)

    def _sub(self, arg: Any) -> str:
        template, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

        def sub(match: re.Match[str]) -> str:
            token = match.group(1)
            if token in variables:
                return str(variables[token])
            if "." in token and token.split(".", 1)[0] in self.resources:
                return str(self.get_att(*token.split(".", 1)))
            return str(self.ref(token))

        return re.sub(r"\$\{([^}!]+)\}", sub, template)

    def _join(self, arg: Any) -> str:
        sep, items = arg
        return str(sep).join(str(i) for i in self.resolve(items))

    def _if(self, arg: Any) -> Any:  # AWS::NoValue resolves to None: the property is as if not given
        name, if_true, if_false = arg
        return self.resolve(if_true if self.condition(name) else if_false)

    def _equals(self, arg: Any) -> bool:
        left, right = self.resolve(arg)
        return str(left) == str(right)

    def _not(self, arg: Any) -> bool:
        return not self.resolve(arg[0])

    def condition(self, name: str) -> bool:
        """A condition of the template's Conditions section, evaluated with the parameters' values."""
        return bool(self.resolve(self.doc.get("Conditions", {})[name]))

    # ---------------------------------------------------------- functions
    def functions(self) -> dict[str, Function]:
        globals_ = self.doc.get("Globals", {}).get("Function", {})
        base_env = self.resolve(globals_.get("Environment", {}).get("Variables", {}))
        api = self.of_type("AWS::Serverless::HttpApi")
        default_auth = {
            logical: bool((props.get("Properties", {}).get("Auth") or {}).get("DefaultAuthorizer"))
            for logical, props in api.items()
        }
        out: dict[str, Function] = {}
        for logical, res in self.of_type("AWS::Serverless::Function").items():
            props = res.get("Properties", {})
            env = {**base_env, **self.resolve((props.get("Environment") or {}).get("Variables", {}))}
            fn = Function(
                logical_id=logical,
                name=self.physical_name(logical),
                arn=self.get_att(logical, "Arn"),
                code_uri=ROOT / props["CodeUri"],
                handler=props["Handler"],
                timeout=int(props.get("Timeout", globals_.get("Timeout", 3))),
                memory=int(props.get("MemorySize", globals_.get("MemorySize", 128))),
                environment={k: str(v) for k, v in env.items() if v is not None},
                reserved_concurrency=_int_or_none(self.resolve(props.get(RESERVED, globals_.get(RESERVED)))),
            )
            invoke_config = self.resolve(props.get("EventInvokeConfig") or {})
            fn.async_retries = int(invoke_config.get("MaximumRetryAttempts", 2))
            on_failure = (invoke_config.get("DestinationConfig") or {}).get("OnFailure") or {}
            if on_failure.get("Type") == "SQS":
                fn.on_failure = str(on_failure["Destination"])
            for event in (props.get("Events") or {}).values():
                kind, eprops = event["Type"], event.get("Properties", {})
                if kind == "HttpApi":
                    api_id = (eprops.get("ApiId") or {}).get("Ref")
                    auth = (eprops.get("Auth") or {}).get("Authorizer")
                    authorized = auth != "NONE" and (bool(auth) or default_auth.get(str(api_id), False))
                    fn.routes.append(Route(eprops["Method"].upper(), eprops["Path"], authorized))
                elif kind == "SQS":
                    fn.sqs.append(
                        {
                            "queue_arn": self.resolve(eprops["Queue"]),
                            "batch_size": int(eprops.get("BatchSize", 10)),
                            "report_failures": "ReportBatchItemFailures" in (eprops.get("FunctionResponseTypes") or []),
                            "max_concurrency": _int_or_none(
                                self.resolve((eprops.get("ScalingConfig") or {}).get("MaximumConcurrency"))
                            ),
                        }
                    )
                elif kind == "S3":
                    rules = ((eprops.get("Filter") or {}).get("S3Key") or {}).get("Rules", [])
                    events = eprops.get("Events")
                    fn.s3.append(
                        {
                            "bucket": self.resolve(eprops["Bucket"]),
                            "events": events if isinstance(events, list) else [events],
                            "prefix": next((r["Value"] for r in rules if r["Name"].lower() == "prefix"), ""),
                            "suffix": next((r["Value"] for r in rules if r["Name"].lower() == "suffix"), ""),
                        }
                    )
                elif kind == "ScheduleV2":
                    fn.schedules.append(self.resolve(eprops))
            out[logical] = fn
        return out

    def layer_paths(self) -> list[Path]:
        """Where the layers' code is, as Lambda mounts it on /opt/python."""
        return [
            ROOT / str(r["Properties"]["ContentUri"]) for r in self.of_type("AWS::Serverless::LayerVersion").values()
        ]

    def authorizer_function(self) -> str | None:
        """The logical id of the function behind the HttpApi's default Lambda authorizer."""
        for res in self.of_type("AWS::Serverless::HttpApi").values():
            auth = res.get("Properties", {}).get("Auth") or {}
            default = auth.get("DefaultAuthorizer")
            if default:
                arn = auth["Authorizers"][default]["FunctionArn"]
                name = arn.get("Fn::GetAtt")
                return str(name[0] if isinstance(name, list) else name.split(".")[0])
        return None

    # ---------------------------------------------------------- resources
    def create_resources(self, session: Any, secret_values: dict[str, str] | None = None) -> None:
        """Create the tables, buckets, queues, secrets and schedule groups of the template with a
        boto3 session (moto server or mock_aws)."""
        ddb = session.client("dynamodb", region_name=REGION)
        for logical in self.of_type("AWS::DynamoDB::Table"):
            p = self.props(logical)
            kwargs: dict[str, Any] = {
                "TableName": self.physical_name(logical),
                "AttributeDefinitions": p["AttributeDefinitions"],
                "KeySchema": p["KeySchema"],
                "BillingMode": p.get("BillingMode", "PAY_PER_REQUEST"),
            }
            if p.get("GlobalSecondaryIndexes"):
                kwargs["GlobalSecondaryIndexes"] = p["GlobalSecondaryIndexes"]
            ddb.create_table(**kwargs)
            ttl = p.get("TimeToLiveSpecification")
            if ttl:
                ddb.update_time_to_live(TableName=kwargs["TableName"], TimeToLiveSpecification=ttl)

        s3 = session.client("s3", region_name=REGION)
        for logical in self.of_type("AWS::S3::Bucket"):
            p = self.props(logical)
            name = self.physical_name(logical)
            s3.create_bucket(Bucket=name)
            if (p.get("VersioningConfiguration") or {}).get("Status") == "Enabled":
                s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})

        sqs = session.client("sqs", region_name=REGION)
        queues = self.of_type("AWS::SQS::Queue")
        for logical in sorted(queues, key=lambda q: "RedrivePolicy" in self.props(q)):
            p = self.resolve(self.props(logical))
            attributes = {}
            if "VisibilityTimeout" in p:
                attributes["VisibilityTimeout"] = str(p["VisibilityTimeout"])
            if "MessageRetentionPeriod" in p:
                attributes["MessageRetentionPeriod"] = str(p["MessageRetentionPeriod"])
            if "RedrivePolicy" in p:
                attributes["RedrivePolicy"] = json.dumps(p["RedrivePolicy"])
            url = sqs.create_queue(QueueName=self.physical_name(logical), Attributes=attributes)["QueueUrl"]
            self.queue_urls[logical] = url

        secrets = session.client("secretsmanager", region_name=REGION)
        for logical in self.of_type("AWS::SecretsManager::Secret"):
            name = self.physical_name(logical)
            value = (secret_values or {}).get(logical) or str(self.props(logical).get("SecretString", "{}"))
            self.secret_arns[logical] = secrets.create_secret(Name=name, SecretString=value)["ARN"]

        scheduler = session.client("scheduler", region_name=REGION)
        for logical in self.of_type("AWS::Scheduler::ScheduleGroup"):
            scheduler.create_schedule_group(Name=self.physical_name(logical))

    def create_schedules(self, session: Any) -> None:
        """The ScheduleV2 events of the template's functions, as schedules in moto."""
        scheduler = session.client("scheduler", region_name=REGION)
        for fn in self.functions().values():
            for props in fn.schedules:
                target: dict[str, Any] = {
                    "Arn": fn.arn,
                    "RoleArn": f"arn:aws:iam::{ACCOUNT_ID}:role/{STACK_NAME}-{fn.logical_id}-schedule",
                }
                if "Input" in props:
                    target["Input"] = props["Input"]
                if "RetryPolicy" in props:
                    target["RetryPolicy"] = props["RetryPolicy"]
                kwargs: dict[str, Any] = {
                    "Name": props.get("Name") or f"{fn.name}-schedule",
                    "ScheduleExpression": props["ScheduleExpression"],
                    "FlexibleTimeWindow": props.get("FlexibleTimeWindow", {"Mode": "OFF"}),
                    "Target": target,
                    "State": props.get("State", "ENABLED"),
                }
                if props.get("GroupName"):
                    kwargs["GroupName"] = props["GroupName"]
                scheduler.create_schedule(**kwargs)

    def environment(self) -> dict[str, str]:
        """Every function's environment, merged: handlers share one process locally."""
        merged: dict[str, str] = {}
        for fn in self.functions().values():
            merged.update(fn.environment)
        return merged


INTRINSICS: dict[str, Any] = {
    "Ref": lambda stack, arg: stack.ref(arg),
    "Fn::GetAtt": Stack._get_att,
    "Fn::Sub": Stack._sub,
    "Fn::Join": Stack._join,
    "Fn::If": Stack._if,
    "Fn::Equals": Stack._equals,
    "Fn::Not": Stack._not,
}
