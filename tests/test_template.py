"""template.yaml: cfn-lint clean, handlers and sample events in place, no circular references,
every function that touches vectors packaged as a container image."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser import BaseModel, parse
from aws_lambda_powertools.utilities.parser.models import (
    EventBridgeModel,
    LambdaFunctionUrlModel,
    S3Model,
    SqsModel,
)

from lake.local.invoke import function_spec, load_template
from lakehouse.config import Settings

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
EVENTS = ROOT / "infra" / "events"

# Each function's sample event, and the model of the event source that sends it.
SAMPLE_EVENTS: dict[str, tuple[str, type[BaseModel]]] = {
    "IngestFunction": ("s3-put.json", S3Model),
    "QueryFunction": ("function-url-sql.json", LambdaFunctionUrlModel),
    "MaintenanceFunction": ("schedule.json", EventBridgeModel),
    "TakeoutFunction": ("sqs-takeout-range.json", SqsModel),
    "CommitFunction": ("sqs-commit.json", SqsModel),
}
EXTRA_EVENTS: dict[str, type[BaseModel]] = {"function-url-tables.json": LambdaFunctionUrlModel}
# Functions that may touch Lance vectors need lancedb, larger than the 250 MB zip limit: images.
# The committer reads and rewrites Parquet (pyarrow, pyiceberg): an image as well.
IMAGE_FUNCTIONS = {
    "IngestFunction",
    "QueryFunction",
    "MaintenanceFunction",
    "TakeoutFunction",
    "CommitFunction",
}
# Properties a container-image function cannot have (E3685), on the function or in Globals.
ZIP_ONLY = {"Runtime", "Handler", "CodeUri", "Layers", "InlineCode"}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE)


def _functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}


def _cfn_lint() -> str:
    beside = Path(sys.executable).parent / "cfn-lint"
    found = str(beside) if beside.exists() else shutil.which("cfn-lint")
    if found is None:
        pytest.fail("cfn-lint is not installed: pip install -e '.[dev]'")
    return found


def test_cfn_lint_finds_nothing() -> None:
    result = subprocess.run(
        [_cfn_lint(), str(TEMPLATE)], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_function_has_a_handler_file_and_a_sample_event(template: dict[str, Any]) -> None:
    functions = _functions(template)
    assert set(functions) == set(SAMPLE_EVENTS)
    for name in functions:
        spec = function_spec(template, name, template_dir=ROOT)
        match = re.fullmatch(r"functions\.(\w+)\.handler\.lambda_handler", spec.handler)
        assert match, f"{name}: handler {spec.handler!r} is not functions.<name>.handler.lambda_handler"
        assert (ROOT / "functions" / match.group(1) / "handler.py").is_file(), spec.handler
        assert (EVENTS / SAMPLE_EVENTS[name][0]).is_file(), name


@pytest.mark.parametrize(
    ("filename", "model"),
    [pytest.param(f, m, id=f) for f, m in [*SAMPLE_EVENTS.values(), *EXTRA_EVENTS.items()]],
)
def test_sample_events_parse_as_their_source_sends_them(filename: str, model: type[BaseModel]) -> None:
    parse(event=json.loads((EVENTS / filename).read_text()), model=model)


def test_environment_names_only_lake_settings(template: dict[str, Any]) -> None:
    fields = {f"LAKE_{name.upper()}" for name in Settings.model_fields}
    for name in _functions(template):
        lake_vars = {k for k in function_spec(template, name).environment if k.startswith("LAKE_")}
        assert lake_vars <= fields, f"{name}: unknown settings {sorted(lake_vars - fields)}"


def _references(value: Any) -> set[str]:
    """Logical ids a template fragment refers to (Ref, Fn::GetAtt, ${Name} in Fn::Sub)."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= _references(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key == "Ref" and isinstance(item, str):
                found.add(item)
            elif key == "Fn::GetAtt":
                found.add(item[0] if isinstance(item, list) else str(item).split(".")[0])
            elif key == "Fn::Sub":
                text = item[0] if isinstance(item, list) else item
                found |= {m.split(".")[0] for m in re.findall(r"\$\{(?!!)([^}]+)\}", text)}
                if isinstance(item, list):
                    found |= _references(item[1])
            else:
                found |= _references(item)
    return found


def test_no_function_refers_to_the_bucket_that_triggers_it(template: dict[str, Any]) -> None:
    """S3 notifications depend on the function: a reference back to the bucket is a cycle."""
    globals_ = template.get("Globals", {}).get("Function", {})
    for name, resource in _functions(template).items():
        properties = resource["Properties"]
        triggers = {
            event["Properties"]["Bucket"]["Ref"]
            for event in properties.get("Events", {}).values()
            if event["Type"] == "S3"
        }
        own = {k: v for k, v in properties.items() if k != "Events"}
        assert not triggers & _references([globals_, own]), f"{name} refers to its trigger bucket"


def test_functions_that_touch_vectors_are_container_images(template: dict[str, Any]) -> None:
    globals_ = template.get("Globals", {}).get("Function", {})
    functions = _functions(template)
    images = {name for name, r in functions.items() if r["Properties"].get("PackageType") == "Image"}
    assert images == IMAGE_FUNCTIONS
    if not set(functions) - images:  # no zip function left: nothing zip-only in Globals
        assert not ZIP_ONLY & set(globals_), sorted(ZIP_ONLY & set(globals_))
    for name in images:
        resource = template["Resources"][name]
        assert not ZIP_ONLY & set(resource["Properties"]), name
        metadata = resource["Metadata"]
        assert metadata["DockerContext"] == "."
        assert metadata["Dockerfile"] == "functions/Dockerfile"
        assert (ROOT / metadata["DockerContext"] / metadata["Dockerfile"]).is_file(), name
        assert metadata["DockerTag"]


def test_zip_functions_declare_runtime_and_code(template: dict[str, Any]) -> None:
    globals_ = template.get("Globals", {}).get("Function", {})
    for name, resource in _functions(template).items():
        properties = resource["Properties"]
        if properties.get("PackageType", "Zip") == "Zip":
            assert properties.get("Runtime", globals_.get("Runtime")), name
            assert properties.get("CodeUri", globals_.get("CodeUri")), name


def test_image_command_is_the_function_handler(template: dict[str, Any]) -> None:
    """ImageConfig.Command names the handler of the function's own package."""
    for name in IMAGE_FUNCTIONS:
        command = template["Resources"][name]["Properties"]["ImageConfig"]["Command"]
        assert command == [f"functions.{_module(template, name)}.handler.lambda_handler"], name


def test_sizes_and_timeouts_are_kept(template: dict[str, Any]) -> None:
    expected = {
        "IngestFunction": (900, 3008),
        "TakeoutFunction": (900, 3008),
        "QueryFunction": (60, 2048),
        "MaintenanceFunction": (900, 3008),
        "CommitFunction": (300, 2048),
    }
    for name, (timeout, memory) in expected.items():
        spec = function_spec(template, name)
        assert (spec.timeout, spec.memory) == (timeout, memory), name
        assert spec.code_uri == "."
        assert spec.environment["LAKE_CONTRACTS_DIR"] == "/var/task/catalog/datasets"


def _module(template: dict[str, Any], name: str) -> str:
    handler = function_spec(template, name).handler
    return handler.split(".")[1]


def test_query_url_is_iam_by_default_or_public_with_oidc(template: dict[str, Any]) -> None:
    """QueryAuth=oidc: AuthType NONE plus the two public permissions, and LAKE_AUTH=oidc with the
    issuer settings; the default stays AWS_IAM with no public permission."""
    parameter = template["Parameters"]["QueryAuth"]
    assert parameter["Default"] == "iam" and parameter["AllowedValues"] == ["iam", "oidc"]
    assert template["Conditions"]["QueryUsesOidc"] == {"Fn::Equals": [{"Ref": "QueryAuth"}, "oidc"]}
    query = template["Resources"]["QueryFunction"]["Properties"]
    assert query["FunctionUrlConfig"]["AuthType"] == {"Fn::If": ["QueryUsesOidc", "NONE", "AWS_IAM"]}
    env = function_spec(template, "QueryFunction").environment
    assert env["LAKE_AUTH"] == {"Fn::If": ["QueryUsesOidc", "oidc", "iam"]}
    assert env["LAKE_OIDC_ISSUER"] == {
        "Fn::If": ["QueryUsesOidc", {"Ref": "OidcIssuer"}, {"Ref": "AWS::NoValue"}]
    }
    assert {"LAKE_OIDC_AUDIENCE", "LAKE_OIDC_SCOPE_CLAIM", "LAKE_OIDC_TENANT_CLAIM"} <= set(env)
    public = {
        r["Properties"]["Action"]: r
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Permission" and r["Properties"].get("Principal") == "*"
    }
    assert set(public) == {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"}
    assert all(r.get("Condition") == "QueryUsesOidc" for r in public.values())
    assert public["lambda:InvokeFunctionUrl"]["Properties"]["FunctionUrlAuthType"] == "NONE"
    # The settings the template can set are valid for Lake (an oidc deployment, Cognito-style).
    settings = Settings(
        auth="oidc",
        oidc_issuer="https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Example",
        oidc_audience="client-id",
        oidc_scope_claim=template["Parameters"]["OidcScopeClaim"]["Default"],
    )
    assert settings.oidc_scope_claim == "cognito:groups" and settings.oidc_algorithms == ["RS256", "ES256"]
