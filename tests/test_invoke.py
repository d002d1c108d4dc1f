"""`lake invoke`: the SAM template read in process, environments resolved, handlers called."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lake.local import invoke as invoke_module
from lake.local.invoke import (
    STACK_VARIABLES,
    FunctionSpec,
    function_spec,
    invoke,
    load_template,
    resolve_environment,
)
from lakehouse.errors import FunctionNotFound, TemplateInvalid, TerminalError

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "infra" / "events"


def _template(tmp_path: Path, text: str) -> dict[str, Any]:
    path = tmp_path / "template.yaml"
    path.write_text(textwrap.dedent(text))
    return load_template(path)


# ---------------------------------------------------------------- load_template


def test_short_form_tags_become_long_form(tmp_path: Path) -> None:
    t = _template(
        tmp_path,
        """
        Values:
          ref: !Ref Bucket
          sub: !Sub "${AWS::StackName}-x"
          sub_list: !Sub ["${A}-y", {A: !Ref B}]
          getatt: !GetAtt Queue.Arn
          getatt_dots: !GetAtt Stack.Outputs.Name
          getatt_list: !GetAtt [Queue, QueueName]
          if: !If [IsProd, !Ref A, !Ref AWS::NoValue]
          join: !Join [",", [a, !Ref B]]
          select: !Select [0, !GetAZs ""]
          split: !Split ["|", "a|b"]
          equals: !Equals [!Ref Stage, prod]
          not: !Not [!Condition IsProd]
          and: !And [!Condition A, !Condition B]
          or: !Or [!Condition A, !Condition B]
          map: !FindInMap [Sizes, !Ref Stage, memory]
          import: !ImportValue shared-vpc
          base64: !Base64 "hello"
          cidr: !Cidr ["10.0.0.0/16", 4, 8]
        """,
    )
    assert t["Values"] == {
        "ref": {"Ref": "Bucket"},
        "sub": {"Fn::Sub": "${AWS::StackName}-x"},
        "sub_list": {"Fn::Sub": ["${A}-y", {"A": {"Ref": "B"}}]},
        "getatt": {"Fn::GetAtt": ["Queue", "Arn"]},
        "getatt_dots": {"Fn::GetAtt": ["Stack", "Outputs.Name"]},
        "getatt_list": {"Fn::GetAtt": ["Queue", "QueueName"]},
        "if": {"Fn::If": ["IsProd", {"Ref": "A"}, {"Ref": "AWS::NoValue"}]},
        "join": {"Fn::Join": [",", ["a", {"Ref": "B"}]]},
        "select": {"Fn::Select": [0, {"Fn::GetAZs": ""}]},
        "split": {"Fn::Split": ["|", "a|b"]},
        "equals": {"Fn::Equals": [{"Ref": "Stage"}, "prod"]},
        "not": {"Fn::Not": [{"Condition": "IsProd"}]},
        "and": {"Fn::And": [{"Condition": "A"}, {"Condition": "B"}]},
        "or": {"Fn::Or": [{"Condition": "A"}, {"Condition": "B"}]},
        "map": {"Fn::FindInMap": ["Sizes", {"Ref": "Stage"}, "memory"]},
        "import": {"Fn::ImportValue": "shared-vpc"},
        "base64": {"Fn::Base64": "hello"},
        "cidr": {"Fn::Cidr": ["10.0.0.0/16", 4, 8]},
    }


def test_the_cloudformation_loader_leaves_yaml_safe_load_alone() -> None:
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load("a: !Ref B")


def test_unreadable_templates_are_terminal_errors(tmp_path: Path) -> None:
    with pytest.raises(TemplateInvalid, match="cannot read"):
        load_template(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("Resources: [unclosed\n")
    with pytest.raises(TemplateInvalid, match="not valid YAML"):
        load_template(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(TemplateInvalid, match="not a mapping"):
        load_template(tmp_path / "list.yaml")


def test_the_project_template_loads() -> None:
    t = load_template(ROOT / "template.yaml")
    assert t["Transform"] == "AWS::Serverless-2016-10-31"
    ingest = t["Resources"]["IngestFunction"]["Properties"]
    assert ingest["Events"]["Upload"]["Properties"]["Bucket"] == {"Ref": "LandingBucket"}


# ---------------------------------------------------------------- function_spec

FUNCTIONS = """
Parameters:
  Stage: {Type: String, Default: dev}
Globals:
  Function:
    Timeout: 30
    CodeUri: src
    Environment:
      Variables:
        SHARED: global
        OVERRIDDEN: global
Resources:
  Bucket:
    Type: AWS::S3::Bucket
  First:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.first.handler
      MemorySize: 512
      Environment:
        Variables:
          OVERRIDDEN: own
          OWN: !Ref Stage
  Second:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.second.handler
      Timeout: 900
      CodeUri: other
  NoHandler:
    Type: AWS::Serverless::Function
    Properties: {}
"""


def test_function_spec_merges_globals_with_the_function(tmp_path: Path) -> None:
    t = _template(tmp_path, FUNCTIONS)
    first = function_spec(t, "First")
    assert first == FunctionSpec(
        logical_id="First",
        handler="app.first.handler",
        environment={"SHARED": "global", "OVERRIDDEN": "own", "OWN": {"Ref": "Stage"}},
        timeout=30,
        memory=512,
        code_uri="src",
    )
    second = function_spec(t, "Second")
    assert (second.timeout, second.memory, second.code_uri) == (900, 128, "other")
    assert second.environment == {"SHARED": "global", "OVERRIDDEN": "global"}


def test_unknown_function_lists_the_functions_that_exist(tmp_path: Path) -> None:
    t = _template(tmp_path, FUNCTIONS)
    with pytest.raises(FunctionNotFound, match=r"no function 'Bucket'.*First, NoHandler, Second") as info:
        function_spec(t, "Bucket")
    assert isinstance(info.value, TerminalError)
    with pytest.raises(FunctionNotFound, match="its functions: none"):
        function_spec({"Resources": {}}, "First")


def test_a_function_without_handler_is_an_invalid_template(tmp_path: Path) -> None:
    with pytest.raises(TemplateInvalid, match="NoHandler has no Handler"):
        function_spec(_template(tmp_path, FUNCTIONS), "NoHandler")


def test_project_functions() -> None:
    t = load_template(ROOT / "template.yaml")
    names = ("IngestFunction", "QueryFunction", "MaintenanceFunction")
    specs = {name: function_spec(t, name) for name in names}
    assert specs["IngestFunction"].handler == "functions.ingest.handler.lambda_handler"
    assert (specs["IngestFunction"].timeout, specs["IngestFunction"].memory) == (900, 3008)
    assert (specs["QueryFunction"].timeout, specs["QueryFunction"].memory) == (60, 2048)
    assert specs["MaintenanceFunction"].timeout == 900
    for spec in specs.values():
        assert spec.code_uri == "."
        assert spec.environment["LAKE_CATALOG_TYPE"] == "glue"


# ---------------------------------------------------------------- resolve_environment

ENVIRONMENT = """
Parameters:
  Prefix: {Type: String, Default: lake}
  Size: {Type: Number, Default: 64}
Mappings:
  Sizes:
    dev: {memory: "256"}
Conditions:
  IsDev: !Equals [!Ref Prefix, lake]
  IsNotDev: !Not [!Condition IsDev]
Resources:
  Landing:
    Type: AWS::S3::Bucket
    Properties:
      BucketName: !Sub "${Prefix}-landing-${AWS::AccountId}"
  Warehouse:
    Type: AWS::S3::Bucket
  Queue:
    Type: AWS::SQS::Queue
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.handler
      Environment:
        Variables:
          LAKE_LANDING_BUCKET: !Sub "${Prefix}-landing-${AWS::AccountId}"
          LAKE_WAREHOUSE_BUCKET: !Ref Warehouse
          LAKE_NAMESPACE: lake
          LAKE_BATCH_ROWS: 1000
          LAKE_FLAG: true
          LAKE_CATALOG_TYPE: glue
          LAKE_CONTRACTS_DIR: /var/task/catalog/datasets
          LAKE_HOME: /tmp/lake
          LAKE_DUCKDB_HOME: /tmp/duckdb
          PLAIN_PATH: /opt/lake
          REGION: !Ref AWS::Region
          PREFIX: !Ref Prefix
          SIZE: !Ref Size
          ARCHIVE: !Sub "s3://${Warehouse}/archive/${!literal}"
          SUB_VARS: !Sub ["${Name}-${AWS::Partition}", {Name: !Ref Prefix}]
          JOINED: !Join ["-", [a, !Ref Prefix, !Select [1, !Split [",", "x,y,z"]]]]
          MAPPED: !FindInMap [Sizes, dev, memory]
          CHOSEN: !If [IsNotDev, prod, dev]
          ENCODED: !Base64 lake
          QUEUE_ARN: !GetAtt Queue.Arn
          QUEUE_URL: !Ref Queue
          QUEUE_NAME: !Sub "${Queue.QueueName}"
          IMPORTED: !ImportValue shared
"""


def _resolved(tmp_path: Path, stack: dict[str, Any] | None = None, **overrides: str) -> dict[str, str | None]:
    t = _template(tmp_path, ENVIRONMENT)
    return resolve_environment(
        t,
        function_spec(t, "Fn"),
        home=tmp_path / "home",
        code_dir=tmp_path / "code",
        stack=stack,
        parameter_overrides=overrides,
    )


def test_environment_without_a_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKE_LANDING_BUCKET", "my-landing")
    monkeypatch.delenv("LAKE_WAREHOUSE_BUCKET", raising=False)
    monkeypatch.setenv("LAKE_REGION", "eu-west-1")
    env = _resolved(tmp_path)
    assert env == {
        # bucket references become the bucket names Lake's settings give
        "LAKE_LANDING_BUCKET": "my-landing",
        "LAKE_WAREHOUSE_BUCKET": "lake-warehouse",
        "LAKE_NAMESPACE": "lake",
        "LAKE_BATCH_ROWS": "1000",
        "LAKE_FLAG": "true",
        "LAKE_CATALOG_TYPE": "glue",
        "LAKE_CONTRACTS_DIR": str(tmp_path / "code" / "catalog" / "datasets"),
        "LAKE_HOME": str(tmp_path / "home"),
        "PLAIN_PATH": "/opt/lake",
        "REGION": "eu-west-1",
        "PREFIX": "lake",
        "SIZE": "64",
        "ARCHIVE": "s3://lake-warehouse/archive/${literal}",
        "SUB_VARS": "lake-aws",
        "JOINED": "a-lake-y",
        "MAPPED": "256",
        "CHOSEN": "dev",
        "ENCODED": "bGFrZQ==",
    }


def test_parameter_overrides_replace_defaults(tmp_path: Path) -> None:
    env = _resolved(tmp_path, Prefix="prod")
    assert (env["PREFIX"], env["CHOSEN"], env["SUB_VARS"]) == ("prod", "prod", "prod-aws")
    # the same expression as the bucket's BucketName names that bucket, whatever the parameters
    assert env["LAKE_LANDING_BUCKET"] == "lake-landing"


def test_a_running_stack_takes_precedence(tmp_path: Path) -> None:
    stack = {"region": "us-east-1", "landing_bucket": "stack-landing", "warehouse_bucket": "stack-warehouse"}
    env = _resolved(tmp_path, stack=stack)
    assert env["LAKE_CATALOG_TYPE"] == "sql"
    assert env["LAKE_HOME"] == str(tmp_path / "home")
    for name in STACK_VARIABLES:
        assert name in env and env[name] is None, name
    assert env["ARCHIVE"] == "s3://stack-warehouse/archive/${literal}"
    assert env["LAKE_NAMESPACE"] == "lake"
    assert "LAKE_DUCKDB_HOME" not in env


def test_project_environment_with_a_stack(tmp_path: Path) -> None:
    t = load_template(ROOT / "template.yaml")
    stack = {"region": "us-east-1", "landing_bucket": "a", "warehouse_bucket": "b"}
    spec = function_spec(t, "IngestFunction")
    env = resolve_environment(t, spec, home=tmp_path, code_dir=ROOT, stack=stack)
    assert env["LAKE_CONTRACTS_DIR"] == str(ROOT / "catalog" / "datasets")
    assert env["LAKE_CATALOG_TYPE"] == "sql"
    assert env["POWERTOOLS_SERVICE_NAME"] == "lake"
    assert "LAKE_DUCKDB_HOME" not in env


# ---------------------------------------------------------------- invoke

PROBE_HANDLER = """
from __future__ import annotations

import os
from typing import Any

from lakehouse.config import get_settings

PREFIXES = ("LAKE_", "PROBE_", "AWS_LAMBDA_", "AWS_SAM")

def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {
        "event": event,
        "env": {k: v for k, v in os.environ.items() if k.startswith(PREFIXES)},
        "namespace": get_settings().namespace,
        "function_name": context.function_name,
        "memory": context.memory_limit_in_mb,
        "remaining": context.get_remaining_time_in_millis(),
        "request_id": context.aws_request_id,
        "arn": context.invoked_function_arn,
    }
"""


@pytest.fixture()
def probe(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A template with one function whose handler reports what it saw."""
    package = f"lakeprobe_{uuid.uuid4().hex[:8]}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "handler.py").write_text(PROBE_HANDLER)
    (tmp_path / "template.yaml").write_text(
        textwrap.dedent(f"""
        Transform: AWS::Serverless-2016-10-31
        Globals:
          Function:
            Environment:
              Variables:
                LAKE_NAMESPACE: probed
                LAKE_CATALOG_TYPE: glue
                LAKE_CONTRACTS_DIR: /var/task/contracts
                PROBE_QUEUE: !GetAtt Queue.Arn
        Resources:
          Queue:
            Type: AWS::SQS::Queue
          Probe:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: .
              Handler: {package}.handler.lambda_handler
              Timeout: 42
              MemorySize: 256
          Broken:
            Type: AWS::Serverless::Function
            Properties:
              Handler: {package}.missing.lambda_handler
        """)
    )
    yield tmp_path / "template.yaml", package
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[name]


def test_invoke_calls_the_handler_in_the_function_environment(
    probe: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    template, package = probe
    home = tmp_path / "home"
    monkeypatch.setattr(invoke_module, "read_state", lambda _home: None)
    monkeypatch.delenv("LAKE_NAMESPACE", raising=False)
    before = dict(os.environ)
    path_before = list(sys.path)

    response = invoke(template, "Probe", {"hello": "lake"}, home)

    assert response["event"] == {"hello": "lake"}
    env = response["env"]
    assert env["LAKE_NAMESPACE"] == "probed"
    assert response["namespace"] == "probed"  # settings were re-read inside the call
    assert env["LAKE_CATALOG_TYPE"] == "glue"  # no stack: the template's catalog
    assert env["LAKE_CONTRACTS_DIR"] == str(template.parent / "contracts")
    assert env["LAKE_HOME"] == str(home.resolve())
    assert "PROBE_QUEUE" not in env  # GetAtt has no local value: skipped
    assert env["AWS_SAM_LOCAL"] == "true"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "Probe"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert response["function_name"] == "Probe"
    assert response["memory"] == 256
    assert 0 < response["remaining"] <= 42_000
    assert str(uuid.UUID(response["request_id"])) == response["request_id"]
    assert response["arn"].endswith(":function:Probe")
    # nothing leaks out of the call
    assert dict(os.environ) == before
    assert sys.path == path_before
    from lakehouse.config import get_settings

    assert get_settings().namespace == "lake"


def test_invoke_with_a_running_stack_unsets_aws_connection_settings(
    probe: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    template, _ = probe
    state = {"region": "us-east-1", "landing_bucket": "l", "warehouse_bucket": "w"}
    monkeypatch.setattr(invoke_module, "read_state", lambda _home: state)
    monkeypatch.setenv("LAKE_S3_ENDPOINT", "http://elsewhere:9000")
    monkeypatch.setenv("LAKE_CATALOG_URI", "postgresql://elsewhere/lake")

    env = invoke(template, "Probe", {}, tmp_path / "home")["env"]

    assert env["LAKE_CATALOG_TYPE"] == "sql"
    assert "LAKE_S3_ENDPOINT" not in env and "LAKE_CATALOG_URI" not in env
    assert os.environ["LAKE_S3_ENDPOINT"] == "http://elsewhere:9000"


def test_invoke_names_a_missing_handler_or_function(probe: tuple[Path, str], tmp_path: Path) -> None:
    template, package = probe
    with pytest.raises(FunctionNotFound, match=f"cannot import the handler module '{package}.missing'"):
        invoke(template, "Broken", {}, tmp_path / "home")
    with pytest.raises(FunctionNotFound, match="its functions: Broken, Probe"):
        invoke(template, "Nope", {}, tmp_path / "home")


# ---------------------------------------------------------------- against the local stack


def _event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


@pytest.mark.integration
def test_sample_events_through_the_project_template(stack: dict[str, Any]) -> None:
    """Ingest and query through template.yaml's functions, as `lake invoke` runs them."""
    import boto3

    home = Path(stack["home"])
    sensor = f"invoke-{uuid.uuid4().hex[:8]}"
    key = f"sensor_readings/{sensor}.csv"
    body = (
        f"ts,sensor_id,temp_c,humidity,status\n2025-10-01T00:00:00Z,{sensor},13.5,60,ok\n"
        f"2025-10-01T01:00:00Z,{sensor},14.0,61,ok\n"
    ).encode()
    s3 = boto3.client(
        "s3",
        endpoint_url=stack["endpoint"],
        region_name=stack["region"],
        aws_access_key_id=stack["access_key_id"],
        aws_secret_access_key=stack["secret_access_key"],
    )
    put = s3.put_object(Bucket=stack["landing_bucket"], Key=key, Body=body)

    upload = _event("s3-put.json")
    record = upload["Records"][0]["s3"]
    record["bucket"]["name"] = stack["landing_bucket"]
    record["object"].update(
        key=key, size=len(body), eTag=put["ETag"].strip('"'), versionId=put.get("VersionId")
    )
    reports = invoke(ROOT / "template.yaml", "IngestFunction", upload, home)["reports"]
    assert reports[0]["rows_accepted"] == 2

    sql = _event("function-url-sql.json")
    count = f"SELECT count(*) AS n FROM lake.sensor_readings WHERE sensor_id = '{sensor}'"
    sql["body"] = json.dumps({"sql": count})
    response = invoke(ROOT / "template.yaml", "QueryFunction", sql, home)
    assert response["statusCode"] == 200, response
    assert json.loads(response["body"])["rows"] == [[2]]

    tables = invoke(ROOT / "template.yaml", "QueryFunction", _event("function-url-tables.json"), home)
    assert tables["statusCode"] == 200, tables
    assert "sensor_readings" in json.dumps(json.loads(tables["body"]))
