"""Run a function of ``template.yaml`` in this process: ``sam local invoke`` without Docker.

:func:`invoke` reads the SAM template, finds the function's handler, Timeout and MemorySize,
builds the environment the function would get in AWS (``Globals.Function.Environment`` merged
with the function's own), adapts it to this machine, imports the handler and calls it with the
event and a Lambda context object. The environment is changed only for the duration of the call.

How the template's environment is adapted:

- Plain values are applied as they are (numbers and booleans as CloudFormation writes them).
- Intrinsics are resolved where that is possible here: ``Ref`` to a parameter (its default or an
  override) or a pseudo parameter (``AWS::Region`` and friends, with SAM's fake account
  ``123456789012``), ``Fn::Sub``, ``Fn::Join``, ``Fn::Select``, ``Fn::Split``, ``Fn::FindInMap``,
  ``Fn::If`` with its conditions and ``Fn::Base64``. A reference to a bucket, by ``Ref`` or by
  the same expression as the bucket's ``BucketName``, resolves to the local bucket of the same
  role (the bucket named by ``LAKE_LANDING_BUCKET`` or ``LAKE_WAREHOUSE_BUCKET``). A variable
  whose value cannot be resolved (``Fn::GetAtt``, ``Fn::ImportValue``, other resources) is
  skipped, as ``sam local`` does.
- Paths under ``/var/task`` (where Lambda unpacks ``CodeUri``) point at the same path under the
  function's ``CodeUri`` folder, so ``LAKE_CONTRACTS_DIR`` finds this checkout's contracts.
- ``LAKE_HOME`` (``/tmp/lake`` in AWS) is the ``settings_home`` given to :func:`invoke`: the
  folder where ``lake up`` writes ``stack.json``.
- Other values under ``/tmp`` (``LAKE_DUCKDB_HOME``) are Lambda's scratch space and are not
  applied: Lake's local default, or the caller's own variable, applies.

When a local stack is running under ``settings_home``, its connection settings take precedence:
``LAKE_CATALOG_TYPE`` is ``sql`` (the template says ``glue``), and ``LAKE_CATALOG_URI``,
``LAKE_CATALOG_PROPERTIES``, ``LAKE_S3_ENDPOINT``, ``LAKE_ACCESS_KEY_ID``,
``LAKE_SECRET_ACCESS_KEY``, ``LAKE_REGION``, ``LAKE_LANDING_BUCKET`` and ``LAKE_WAREHOUSE_BUCKET``
are unset for the call, whether the template or the caller's shell set them, so that
:func:`lakehouse.config.load_settings` takes them from the stack file. Without a running stack
the template's environment applies as in AWS (Glue catalog, the caller's AWS credentials), with
bucket references resolved to the bucket names Lake's settings give (``LAKE_*_BUCKET`` or the
defaults).

Container-image functions (``PackageType: Image``) have no ``Handler``: their handler is the
image's command, ``ImageConfig.Command`` in the template or else the ``CMD`` of the Dockerfile
named by the function's ``Metadata`` (``Dockerfile`` inside ``DockerContext``, as ``sam build``
reads them). ``/var/task`` then stands for the ``DockerContext`` folder, from which the image copies
``catalog/`` to ``/var/task/catalog``.

Like a warm Lambda container, a handler module is imported once per process: module-level state
survives from one call to the next, while settings are re-read on every call.
"""

from __future__ import annotations

import base64
import importlib
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from lake.local.events import LambdaContext
from lake.local.stack import read_state
from lakehouse.config import Settings, get_settings, load_settings
from lakehouse.errors import FunctionNotFound, TemplateInvalid

log = logging.getLogger(__name__)

FUNCTION_TYPE = "AWS::Serverless::Function"
BUCKET_TYPE = "AWS::S3::Bucket"
LOCAL_ACCOUNT_ID = "123456789012"
LOCAL_STACK_NAME = "lake-local"
TASK_ROOT = PurePosixPath("/var/task")
LAMBDA_TMP = PurePosixPath("/tmp")
BUCKET_VARIABLES = {"LAKE_LANDING_BUCKET": "landing", "LAKE_WAREHOUSE_BUCKET": "warehouse"}
# Unset for the call when a local stack runs: load_settings reads them from the stack file.
STACK_VARIABLES = (
    "LAKE_CATALOG_URI",
    "LAKE_CATALOG_PROPERTIES",
    "LAKE_S3_ENDPOINT",
    "LAKE_ACCESS_KEY_ID",
    "LAKE_SECRET_ACCESS_KEY",
    "LAKE_REGION",
    "LAKE_LANDING_BUCKET",
    "LAKE_WAREHOUSE_BUCKET",
)

# ---------------------------------------------------------------- template parsing


class CfnLoader(yaml.SafeLoader):
    """A YAML SafeLoader that reads CloudFormation's short-form tags as their long form."""


def _tag_value(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    raise TemplateInvalid(f"cannot read the tag {node.tag} at {node.start_mark}")


def _long_form(key: str) -> Callable[[yaml.SafeLoader, yaml.Node], dict[str, Any]]:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        return {key: _tag_value(loader, node)}

    return construct


def _get_att(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
    value = _tag_value(loader, node)
    if isinstance(value, str):
        resource, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
    return {"Fn::GetAtt": value}


for _name in (
    "Sub",
    "If",
    "Join",
    "Select",
    "Split",
    "Equals",
    "Not",
    "And",
    "Or",
    "FindInMap",
    "ImportValue",
    "Base64",
    "GetAZs",
    "Cidr",
    "Length",
    "ToJsonString",
):
    CfnLoader.add_constructor(f"!{_name}", _long_form(f"Fn::{_name}"))
CfnLoader.add_constructor("!Ref", _long_form("Ref"))
CfnLoader.add_constructor("!Condition", _long_form("Condition"))
CfnLoader.add_constructor("!GetAtt", _get_att)


def load_template(path: Path) -> dict[str, Any]:
    """Parse a SAM/CloudFormation YAML template, short-form tags included.

    Args:
        path: The template file.

    Returns:
        The template as plain dicts and lists; ``!Ref X`` becomes ``{"Ref": "X"}``, ``!GetAtt a.b``
        becomes ``{"Fn::GetAtt": ["a", "b"]}`` and every other ``!Fn`` becomes ``{"Fn::Fn": ...}``.

    Raises:
        TemplateInvalid: The file is missing, is not YAML, or is not a mapping.
    """
    try:
        template = yaml.load(path.read_text(), Loader=CfnLoader)  # noqa: S506 - a SafeLoader subclass
    except OSError as e:
        raise TemplateInvalid(f"cannot read the template {path}: {e}") from e
    except yaml.YAMLError as e:
        raise TemplateInvalid(f"the template {path} is not valid YAML: {e}") from e
    if not isinstance(template, dict):
        raise TemplateInvalid(f"the template {path} is not a mapping")
    return template


# ---------------------------------------------------------------- functions


@dataclass(frozen=True)
class FunctionSpec:
    """What :func:`invoke` needs to know about one function of the template."""

    logical_id: str
    handler: str
    environment: dict[str, Any]
    timeout: int = 3
    memory: int = 128
    code_uri: str = "."


def _functions(template: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    resources = template.get("Resources") or {}
    return {
        name: resource.get("Properties") or {}
        for name, resource in resources.items()
        if isinstance(resource, dict) and resource.get("Type") == FUNCTION_TYPE
    }


def _as_int(value: Any, default: int) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return default


def _variables(properties: Mapping[str, Any]) -> dict[str, Any]:
    environment = properties.get("Environment") or {}
    return dict(environment.get("Variables") or {})


def resource_metadata(template: Mapping[str, Any], logical_id: str) -> dict[str, Any]:
    """The ``Metadata`` of one resource (``{}`` when it has none)."""
    resource = (template.get("Resources") or {}).get(logical_id) or {}
    metadata = resource.get("Metadata") if isinstance(resource, dict) else None
    return dict(metadata) if isinstance(metadata, dict) else {}


_CMD_EXEC_FORM = re.compile(r"^\s*CMD\s+(\[.*\])\s*$", re.IGNORECASE)


def dockerfile_command(path: Path) -> list[str]:
    """The last ``CMD`` of a Dockerfile, in exec form (``CMD ["module.function"]``).

    Args:
        path: The Dockerfile.

    Returns:
        The command's words.

    Raises:
        TemplateInvalid: The file cannot be read or has no exec-form ``CMD``.
    """
    try:
        text = path.read_text()
    except OSError as e:
        raise TemplateInvalid(f"cannot read the Dockerfile {path}: {e}") from e
    logical_lines = re.sub(r"\\\n", " ", text).splitlines()
    found: list[str] | None = None
    for line in logical_lines:
        match = _CMD_EXEC_FORM.match(line)
        if match is None:
            continue
        try:
            words = json.loads(match.group(1))
        except ValueError as e:
            raise TemplateInvalid(f"{path}: CMD is not a JSON list: {match.group(1)}") from e
        if not (isinstance(words, list) and words and all(isinstance(w, str) for w in words)):
            raise TemplateInvalid(f"{path}: CMD is not a list of strings: {match.group(1)}")
        found = words
    if found is None:
        raise TemplateInvalid(f'{path} has no CMD ["module.function"]')
    return found


def image_command(
    own: Mapping[str, Any],
    shared: Mapping[str, Any],
    metadata: Mapping[str, Any],
    template_dir: Path | None,
    logical_id: str,
) -> str:
    """The handler of a container-image function: ``ImageConfig.Command``, else the Dockerfile's CMD."""
    config = own.get("ImageConfig", shared.get("ImageConfig")) or {}
    command = config.get("Command") if isinstance(config, dict) else None
    if command is None:
        dockerfile = metadata.get("Dockerfile")
        if not isinstance(dockerfile, str) or template_dir is None:
            raise TemplateInvalid(
                f"{logical_id} is an image function without ImageConfig.Command"
                + ("" if isinstance(dockerfile, str) else " or Metadata.Dockerfile")
            )
        context = metadata.get("DockerContext", ".")
        command = dockerfile_command(template_dir / str(context) / dockerfile)
    handler = command[0] if isinstance(command, list) and command else command
    if not isinstance(handler, str) or "." not in handler.strip("."):
        raise TemplateInvalid(f"{logical_id}: the image command {command!r} is not module.function")
    return handler


def function_spec(
    template: Mapping[str, Any], logical_id: str, *, template_dir: Path | None = None
) -> FunctionSpec:
    """The handler, environment, timeout and memory of one ``AWS::Serverless::Function``.

    Properties missing on the function come from ``Globals.Function`` (then SAM's defaults: 3 s,
    128 MB); environment variables are merged, the function's own winning. For a container-image
    function the handler is its ``ImageConfig.Command`` or else its Dockerfile's ``CMD``, and the
    code folder is its ``Metadata.DockerContext``.

    Args:
        template: A template from :func:`load_template`.
        logical_id: The function's logical id, e.g. ``IngestFunction``.
        template_dir: The template's folder, where a Dockerfile named by ``Metadata`` is found;
            needed only for an image function without ``ImageConfig.Command``.

    Returns:
        The function's spec; environment values are as in the template (intrinsics unresolved).

    Raises:
        FunctionNotFound: No such function; the message lists the functions that exist.
        TemplateInvalid: The function has no ``module.function`` handler (nor image command).
    """
    functions = _functions(template)
    if logical_id not in functions:
        known = ", ".join(sorted(functions)) or "none"
        raise FunctionNotFound(f"no function {logical_id!r} in the template; its functions: {known}")
    own = functions[logical_id]
    shared = (template.get("Globals") or {}).get("Function") or {}
    code_uri = own.get("CodeUri", shared.get("CodeUri", "."))
    if own.get("PackageType", shared.get("PackageType")) == "Image":
        metadata = resource_metadata(template, logical_id)
        handler = image_command(own, shared, metadata, template_dir, logical_id)
        code_uri = metadata.get("DockerContext", ".")
    else:
        declared = own.get("Handler", shared.get("Handler"))
        if not isinstance(declared, str) or "." not in declared.strip("."):
            raise TemplateInvalid(
                f"{logical_id} has no Handler of the form module.function (got {declared!r})"
            )
        handler = declared
    return FunctionSpec(
        logical_id=logical_id,
        handler=handler,
        environment={**_variables(shared), **_variables(own)},
        timeout=_as_int(own.get("Timeout", shared.get("Timeout")), 3),
        memory=_as_int(own.get("MemorySize", shared.get("MemorySize")), 128),
        code_uri=code_uri if isinstance(code_uri, str) else ".",
    )


# ---------------------------------------------------------------- intrinsics


class Unresolvable(Exception):
    """An intrinsic that has no value outside AWS (GetAtt, ImportValue, another resource)."""


_SUB_VARIABLE = re.compile(r"\$\{(!?)([^}]*)\}")


class _Resolver:
    """Resolves CloudFormation intrinsics to strings, as far as that is possible off AWS."""

    def __init__(
        self,
        template: Mapping[str, Any],
        *,
        region: str,
        buckets: Mapping[str, str],
        parameter_overrides: Mapping[str, str],
    ) -> None:
        self.template = template
        self.resources: Mapping[str, Any] = template.get("Resources") or {}
        self.buckets = buckets
        self.pseudo = {
            "AWS::Region": region,
            "AWS::AccountId": LOCAL_ACCOUNT_ID,
            "AWS::StackName": LOCAL_STACK_NAME,
            "AWS::StackId": f"arn:aws:cloudformation:{region}:{LOCAL_ACCOUNT_ID}:stack/{LOCAL_STACK_NAME}/1",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }
        self.parameters: dict[str, str] = {}
        for name, declaration in (template.get("Parameters") or {}).items():
            if isinstance(declaration, dict) and "Default" in declaration:
                self.parameters[name] = self._scalar(declaration["Default"])
        self.parameters.update(parameter_overrides)

    @staticmethod
    def _scalar(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float | str):
            return str(value)
        raise Unresolvable(f"{value!r} is not a scalar")

    def string(self, value: Any) -> str:
        resolved = self.value(value)
        if isinstance(resolved, list):
            raise Unresolvable(f"{value!r} is a list, not a string")
        return resolved

    def value(self, value: Any) -> str | list[str]:
        if isinstance(value, list):
            return [self.string(item) for item in value]
        if not isinstance(value, dict):
            return self._scalar(value)
        for logical_id, name in self.buckets.items():
            bucket_name = ((self.resources.get(logical_id) or {}).get("Properties") or {}).get("BucketName")
            if bucket_name is not None and value == bucket_name:
                return name
        if len(value) != 1:
            raise Unresolvable(f"{value!r} is not an intrinsic function")
        ((function, argument),) = value.items()
        method = _FUNCTIONS.get(function)
        if method is None:
            raise Unresolvable(f"{function} has no value outside AWS")
        return method(self, argument)

    def ref(self, name: Any) -> str:
        if name in self.buckets:
            return self.buckets[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.pseudo:
            return self.pseudo[name]
        raise Unresolvable(f"Ref {name} has no value outside AWS")

    def sub(self, argument: Any) -> str:
        if isinstance(argument, list) and len(argument) == 2:
            text, variables = argument
            local = {key: self.string(item) for key, item in (variables or {}).items()}
        else:
            text, local = argument, {}
        if not isinstance(text, str):
            raise Unresolvable(f"Fn::Sub of {text!r}")

        def replace(match: re.Match[str]) -> str:
            if match.group(1):
                return "${" + match.group(2) + "}"
            name = match.group(2).strip()
            if name in local:
                return local[name]
            if "." in name and not name.startswith("AWS::"):
                raise Unresolvable(f"${{{name}}} is an attribute of a resource")
            return self.ref(name)

        return _SUB_VARIABLE.sub(replace, text)

    def join(self, argument: Any) -> str:
        delimiter, items = argument
        values = self.value(items)
        return self.string(delimiter).join(values if isinstance(values, list) else [values])

    def select(self, argument: Any) -> str:
        index, items = argument
        values = self.value(items)
        if not isinstance(values, list):
            raise Unresolvable("Fn::Select of a string")
        return values[int(self.string(index))]

    def split(self, argument: Any) -> list[str]:
        delimiter, text = argument
        return self.string(text).split(self.string(delimiter))

    def find_in_map(self, argument: Any) -> str:
        mapping, top, second = (self.string(item) for item in argument)
        try:
            return self._scalar(self.template["Mappings"][mapping][top][second])
        except (KeyError, TypeError) as e:
            raise Unresolvable(f"Fn::FindInMap {mapping}/{top}/{second}") from e

    def base64(self, argument: Any) -> str:
        return base64.b64encode(self.string(argument).encode()).decode()

    def if_(self, argument: Any) -> str:
        condition, when_true, when_false = argument
        return self.string(when_true if self.condition(condition) else when_false)

    def condition(self, name: Any) -> bool:
        conditions = self.template.get("Conditions") or {}
        if name not in conditions:
            raise Unresolvable(f"no condition {name!r}")
        return self.truth(conditions[name])

    def truth(self, expression: Any) -> bool:
        if not isinstance(expression, dict) or len(expression) != 1:
            raise Unresolvable(f"{expression!r} is not a condition")
        ((function, argument),) = expression.items()
        if function == "Condition":
            return self.condition(argument)
        if function == "Fn::Equals":
            left, right = argument
            return self.string(left) == self.string(right)
        if function == "Fn::Not":
            return not self.truth(argument[0])
        if function == "Fn::And":
            return all(self.truth(item) for item in argument)
        if function == "Fn::Or":
            return any(self.truth(item) for item in argument)
        raise Unresolvable(f"{function} is not a condition function")


_FUNCTIONS: dict[str, Callable[[_Resolver, Any], str | list[str]]] = {
    "Ref": _Resolver.ref,
    "Fn::Sub": _Resolver.sub,
    "Fn::Join": _Resolver.join,
    "Fn::Select": _Resolver.select,
    "Fn::Split": _Resolver.split,
    "Fn::FindInMap": _Resolver.find_in_map,
    "Fn::Base64": _Resolver.base64,
    "Fn::If": _Resolver.if_,
}


def _referenced_bucket(template: Mapping[str, Any], value: Any) -> str | None:
    """The logical id of the bucket ``value`` names (by Ref or by its BucketName expression)."""
    resources = template.get("Resources") or {}
    buckets = {k: v for k, v in resources.items() if isinstance(v, dict) and v.get("Type") == BUCKET_TYPE}
    if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in buckets:
        return str(value["Ref"])
    if isinstance(value, dict):
        for logical_id, bucket in buckets.items():
            if (bucket.get("Properties") or {}).get("BucketName") == value:
                return logical_id
    return None


def _local_path(value: str, code_dir: Path) -> str | None:
    """``value`` with /var/task mapped to ``code_dir``; None for Lambda's /tmp scratch space."""
    if not value.startswith("/"):
        return value
    path = PurePosixPath(value)
    if path == TASK_ROOT or TASK_ROOT in path.parents:
        return str(code_dir.joinpath(*path.relative_to(TASK_ROOT).parts))
    if path == LAMBDA_TMP or LAMBDA_TMP in path.parents:
        return None
    return value


def resolve_environment(
    template: Mapping[str, Any],
    spec: FunctionSpec,
    *,
    home: Path,
    code_dir: Path,
    stack: Mapping[str, Any] | None,
    parameter_overrides: Mapping[str, str] | None = None,
) -> dict[str, str | None]:
    """The environment changes :func:`invoke` applies for one call (see the module docstring).

    Args:
        template: A template from :func:`load_template`.
        spec: The function, from :func:`function_spec`.
        home: The local stack's folder; becomes ``LAKE_HOME``.
        code_dir: The folder that stands for ``/var/task`` (the function's CodeUri).
        stack: The running local stack's state (:func:`lake.local.stack.read_state`), or None.
        parameter_overrides: Template parameter values that replace their defaults.

    Returns:
        Variable name to value; None means the variable is unset for the call.
    """
    if stack is not None:
        region, landing, warehouse = stack["region"], stack["landing_bucket"], stack["warehouse_bucket"]
    else:
        defaults = load_settings(home=home)
        region, landing, warehouse = defaults.region, defaults.landing_bucket, defaults.warehouse_bucket
    local_names = {"landing": landing, "warehouse": warehouse}
    buckets: dict[str, str] = {}
    for variable, role in BUCKET_VARIABLES.items():
        logical_id = _referenced_bucket(template, spec.environment.get(variable))
        if logical_id is not None:
            buckets[logical_id] = local_names[role]
    resolver = _Resolver(
        template, region=region, buckets=buckets, parameter_overrides=parameter_overrides or {}
    )

    changes: dict[str, str | None] = {}
    for name, raw in spec.environment.items():
        try:
            value = resolver.string(raw)
        except (Unresolvable, ValueError, TypeError, IndexError) as e:
            log.info("%s: %s is not set (%s)", spec.logical_id, name, e)
            continue
        local = _local_path(value, code_dir)
        if local is not None:
            changes[name] = local
    changes["LAKE_HOME"] = str(home)
    if stack is not None:
        changes["LAKE_CATALOG_TYPE"] = "sql"
        changes.update(dict.fromkeys(STACK_VARIABLES))
    return changes


# ---------------------------------------------------------------- invoking


@contextmanager
def _environment(changes: Mapping[str, str | None]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in changes}
    try:
        for name, value in changes.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


@contextmanager
def _import_path(folder: Path) -> Iterator[None]:
    entry = str(folder)
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added and entry in sys.path:
            sys.path.remove(entry)


def _handler(spec: FunctionSpec) -> Callable[[Any, Any], Any]:
    module_name, _, attribute = spec.handler.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is None or not (module_name == e.name or module_name.startswith(e.name + ".")):
            raise  # the handler exists but one of its own imports is missing
        raise FunctionNotFound(f"{spec.logical_id}: cannot import the handler module {module_name!r}") from e
    handler = getattr(module, attribute, None)
    if not callable(handler):
        raise FunctionNotFound(f"{spec.logical_id}: {module_name} has no function {attribute!r}")
    return handler


def _code_dir(template_path: Path, code_uri: str) -> Path:
    folder = (template_path.parent / code_uri).resolve()
    return folder if folder.is_dir() else template_path.parent.resolve()


def _runtime_variables(spec: FunctionSpec, context: LambdaContext) -> dict[str, str | None]:
    """What the Lambda runtime sets; AWS_SAM_LOCAL turns Powertools tracing off, as under sam."""
    return {
        "AWS_SAM_LOCAL": "true",
        "AWS_LAMBDA_FUNCTION_NAME": context.function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": context.function_version,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": str(spec.timeout),
        "AWS_LAMBDA_LOG_GROUP_NAME": context.log_group_name,
        "AWS_LAMBDA_LOG_STREAM_NAME": context.log_stream_name,
    }


def invoke(
    template_path: Path,
    logical_id: str,
    event: dict[str, Any],
    settings_home: Path | None = None,
    *,
    parameter_overrides: Mapping[str, str] | None = None,
) -> Any:
    """Call one function of the SAM template in this process, as ``sam local invoke`` would.

    Args:
        template_path: The SAM template, e.g. ``template.yaml``.
        logical_id: The function's logical id, e.g. ``QueryFunction``.
        event: The event, e.g. one of ``infra/events/*.json``.
        settings_home: The local stack's folder (``LAKE_HOME``); default: from the settings.
        parameter_overrides: Template parameter values that replace their defaults.

    Returns:
        Whatever the handler returns.

    Raises:
        FunctionNotFound: No such function in the template, or its handler cannot be imported.
        TemplateInvalid: The template cannot be read.
    """
    template = load_template(template_path)
    spec = function_spec(template, logical_id, template_dir=template_path.parent)
    home = (settings_home if settings_home is not None else load_settings().home).resolve()
    code_dir = _code_dir(template_path, spec.code_uri)
    changes = resolve_environment(
        template,
        spec,
        home=home,
        code_dir=code_dir,
        stack=read_state(home),
        parameter_overrides=parameter_overrides,
    )
    context = LambdaContext(
        function_name=spec.logical_id, memory_limit_in_mb=spec.memory, timeout_seconds=float(spec.timeout)
    )
    changes.update(_runtime_variables(spec, context))
    started = time.monotonic()
    with _environment(changes), _import_path(code_dir):
        get_settings.cache_clear()
        try:
            handler = _handler(spec)
            return handler(event, context)
        finally:
            get_settings.cache_clear()
            elapsed = time.monotonic() - started
            if elapsed > spec.timeout:
                log.warning(
                    "%s ran %.1f s, longer than its Timeout of %d s", logical_id, elapsed, spec.timeout
                )


def local_event(settings: Settings, event: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A sample event fitted to the local stack, and a note per change.

    The samples of ``infra/events/`` name objects by a version id from AWS. Locally that version
    does not exist: the event is pointed at the object's current version (so a second delivery
    of the same object is a duplicate, as on AWS, instead of a new ingest). An object that does
    not exist at all is a terminal error naming it.
    """
    from botocore.exceptions import ClientError

    from lakehouse.errors import TerminalError
    from lakehouse.storage import s3_client

    event = json.loads(json.dumps(event))
    notes: list[str] = []
    s3 = s3_client(settings)

    def current(bucket: str, key: str, version: str | None) -> dict[str, Any]:
        try:
            if version:
                try:
                    return dict(s3.head_object(Bucket=bucket, Key=key, VersionId=version))
                except ClientError:
                    pass  # not this version here: the current one, below
            head = dict(s3.head_object(Bucket=bucket, Key=key))
        except ClientError as e:
            raise TerminalError(
                f"the event names s3://{bucket}/{key}, which the local stack does not hold: upload it "
                f"first (`lake put`, or `make demo` for the samples)"
            ) from e
        if version and head.get("VersionId") != version:
            notes.append(f"s3://{bucket}/{key}: version {version} is not in the local stack; using the "
                         f"current version {head.get('VersionId')}")
        return head

    for record in event.get("Records") or []:
        if isinstance(record, dict) and record.get("eventSource") == "aws:s3":
            obj = record["s3"]["object"]
            bucket = record["s3"]["bucket"]["name"]
            head = current(bucket, obj["key"], obj.get("versionId"))
            obj.update(
                size=int(head["ContentLength"]), eTag=head["ETag"].strip('"'), versionId=head.get("VersionId")
            )
        elif isinstance(record, dict) and record.get("eventSource") == "aws:sqs":
            try:
                body = json.loads(record.get("body") or "")
            except ValueError:
                continue  # not a message Lake sends: the function says what is wrong with it
            if isinstance(body, dict) and {"bucket", "key"} <= body.keys():
                head = current(body["bucket"], body["key"], body.get("version"))
                body["version"] = head.get("VersionId") or head["ETag"].strip('"')
                _fit_member_range(settings, body, notes)
                record["body"] = json.dumps(body)
    return event, notes


def _fit_member_range(settings: Settings, message: dict[str, Any], notes: list[str]) -> None:
    """Point a sample's zip member range at the range of the local archive that holds its first
    member: a range is an identity (``#members=start-end``), and one the ingest of that archive
    never made would ingest its members a second time."""
    from lakehouse.storage import open_object
    from lakehouse.takeout.archive import ZipArchive, archive_kind, plan_ranges

    bucket, key = str(message["bucket"]), str(message["key"])
    start, end = int(message.get("start", 0)), int(message.get("end", -1))
    if archive_kind(key) != "zip" or end < 0:
        return  # a tar continuation goes on from its last committed chunk by itself
    archive = ZipArchive(lambda: open_object(settings, bucket, key, buffer_size=4 << 20), f"s3://{bucket}/{key}")
    try:
        members = [m for m in archive.members if not m.is_dir]
    finally:
        archive.close()
    ranges = plan_ranges(members, settings.takeout_range_bytes)
    fitting = next((r for r in ranges if r[0] <= start < r[1]), None)
    if fitting is not None and fitting != (start, end):
        notes.append(f"s3://{bucket}/{key}: members {start}-{end} are range {fitting[0]}-{fitting[1]} here")
        message["start"], message["end"] = fitting
