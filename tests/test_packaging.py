"""Packaging: the function images' Dockerfiles (checked statically: no Docker engine needed),
handlers that do not import lancedb or torch, and `lake invoke` of container-image functions."""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import subprocess
import sys
import textwrap
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lake.local import invoke as invoke_module
from lake.local.invoke import dockerfile_command, function_spec, invoke, load_template
from lakehouse.errors import TemplateInvalid

ROOT = Path(__file__).resolve().parent.parent
HANDLERS = ("ingest", "query", "maintenance", "takeout", "commit")
# Functions that embed text (ingest, Takeout: documents; query: the search text) install `embed`.
EMBEDDING = {"ingest", "query", "takeout"}
VECTOR_MODULES = ("lancedb", "lance", "faiss", "torch", "sentence_transformers", "model2vec", "transformers")
INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER",
    "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}  # fmt: skip


def parse_dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each instruction; comments dropped, continuations joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    found = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        keyword, _, rest = stripped.partition(" ")
        found.append((keyword.upper(), rest.strip()))
    return found


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _torch_pin() -> str:
    embed = _pyproject()["project"]["optional-dependencies"]["embed"]
    (pin,) = [r for r in embed if re.match(r"torch\b", r)]
    return pin.removeprefix("torch").strip()


def _dockerignore_allows(path: str) -> bool:
    """Whether the root .dockerignore keeps ``path`` in the build context (last match wins)."""
    allowed = True
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        rule = raw.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        top = path.split("/")[0]
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(top, pattern):
            allowed = negate
    return allowed


DOCKERFILE = ROOT / "functions" / "Dockerfile"


def _build_args() -> dict[str, dict[str, str]]:
    """Each image function's DockerBuildArgs, by handler package."""
    template = load_template(ROOT / "template.yaml")
    found = {}
    for resource in template["Resources"].values():
        if resource.get("Properties", {}).get("PackageType") == "Image":
            (command,) = resource["Properties"]["ImageConfig"]["Command"]
            found[command.split(".")[1]] = resource["Metadata"].get("DockerBuildArgs", {})
    return found


@pytest.fixture(scope="module")
def instructions() -> list[tuple[str, str]]:
    return parse_dockerfile(DOCKERFILE)


# ---------------------------------------------------------------- the one Dockerfile


def test_one_dockerfile_serves_every_function() -> None:
    assert sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "functions").rglob("Dockerfile")) == [
        "functions/Dockerfile"
    ]
    assert set(_build_args()) == set(HANDLERS)


def test_dockerfile_uses_known_instructions_and_the_lambda_python_base(
    instructions: list[tuple[str, str]],
) -> None:
    assert {keyword for keyword, _ in instructions} <= INSTRUCTIONS
    froms = [args for keyword, args in instructions if keyword == "FROM"]
    assert len(froms) == 1
    match = re.fullmatch(r"public\.ecr\.aws/lambda/python:(3\.\d+)", froms[0])
    assert match, froms[0]
    # Within the project's supported Pythons.
    minor = int(match.group(1).split(".")[1])
    assert 11 <= minor < 14
    # The template names each handler (ImageConfig.Command): the image has no CMD of its own.
    assert not [args for keyword, args in instructions if keyword == "CMD"]


@pytest.mark.parametrize("name", HANDLERS)
def test_each_image_function_names_its_handler(name: str) -> None:
    template = load_template(ROOT / "template.yaml")
    handler = f"functions.{name}.handler.lambda_handler"
    spec = next(
        function_spec(template, logical_id, template_dir=ROOT)
        for logical_id, r in template["Resources"].items()
        if r.get("Properties", {}).get("ImageConfig", {}).get("Command") == [handler]
    )
    module, _, attribute = spec.handler.rpartition(".")
    source = ROOT / Path(*module.split(".")).with_suffix(".py")
    tree = ast.parse(source.read_text())
    assert any(isinstance(n, ast.FunctionDef) and n.name == attribute for n in tree.body), source


def test_embed_is_built_in_only_where_text_is_embedded(instructions: list[tuple[str, str]]) -> None:
    assert {name for name, args in _build_args().items() if args.get("EXTRAS") == "embed"} == EMBEDDING
    assert all(args.get("EXTRAS") in ("embed", "") for args in _build_args().values())
    assert ("ARG", 'EXTRAS=""') in instructions  # no extras unless the template asks
    runs = [args for keyword, args in instructions if keyword == "RUN"]
    installs = [r for r in runs if "pip install" in r]
    (project,) = [r for r in installs if "/tmp/lake" in r]
    assert '"/tmp/lake${EXTRAS:+[${EXTRAS}]}"' in project and "--no-cache-dir" in project
    # CPU torch first, at exactly the pyproject pin, so `.[embed]` finds it satisfied; only with embed.
    (torch,) = [r for r in installs if "torch" in r]
    assert runs.index(torch) < runs.index(project)
    assert f'"torch{_torch_pin()}+cpu"' in torch and "TORCH_INDEX_URL" in torch
    assert torch.startswith('if [ "${EXTRAS}" = "embed" ]; then ')


def test_images_that_embed_text_ship_the_static_model(instructions: list[tuple[str, str]]) -> None:
    envs = [args for keyword, args in instructions if keyword == "ENV"]
    runs = [args for keyword, args in instructions if keyword == "RUN"]
    (distil,) = [r for r in runs if "get_embedder('static'" in r]
    assert distil.startswith('if [ "${EXTRAS}" = "embed" ]; then ')
    assert "LAKE_MODELS_DIR=/opt/lake/models" in envs  # a folder of the image, not /tmp
    project = next(r for r in runs if "/tmp/lake" in r and "pip install" in r)
    assert runs.index(project) < runs.index(distil)  # Lake is installed first
    ordered = [args for _, args in instructions]
    assert ordered.index("LAKE_MODELS_DIR=/opt/lake/models") < ordered.index(distil)


def test_dockerfile_copies_the_library_and_handlers_never_the_lake_command(
    instructions: list[tuple[str, str]],
) -> None:
    copies = [args.split() for keyword, args in instructions if keyword == "COPY"]
    sources = {source for words in copies for source in words[:-1] if not source.startswith("--")}
    # What `pip install .` needs: the project file, its readme and the function packages.
    assert sources == {"pyproject.toml", "README.md", "lakehouse", "functions", "catalog"}
    # The `lake` command and the local stack stay out of every image and its build context.
    assert "lake" not in sources and not _dockerignore_allows("lake")
    # LAKE_CONTRACTS_DIR is /var/task/catalog/datasets; the image puts catalog/ there.
    assert ["catalog", "${LAMBDA_TASK_ROOT}/catalog"] in copies
    template = load_template(ROOT / "template.yaml")
    contracts = template["Globals"]["Function"]["Environment"]["Variables"]["LAKE_CONTRACTS_DIR"]
    assert contracts == "/var/task/catalog/datasets"
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source} does not exist"
        assert _dockerignore_allows(source), f".dockerignore leaves out {source}"


def test_dockerignore_keeps_the_build_context_small() -> None:
    for heavy in (".venv", ".git", "build", "tests", ".lake", "bench", "lake"):
        assert not _dockerignore_allows(heavy), heavy


def test_embed_extra_holds_the_text_embedders() -> None:
    embed = _pyproject()["project"]["optional-dependencies"]["embed"]
    names = {re.split(r"[=<>~!\[ ]", r)[0] for r in embed}
    assert {"torch", "sentence-transformers"} <= names
    assert _torch_pin().startswith("=="), "torch is pinned exactly (the CPU build)"
    core = {re.split(r"[=<>~!\[ ]", r)[0] for r in _pyproject()["project"]["dependencies"]}
    assert {"lancedb", "faiss-cpu"} <= core and not names & core


# ---------------------------------------------------------------- imports


@pytest.mark.parametrize("name", HANDLERS)
def test_importing_a_handler_loads_no_vector_library(name: str) -> None:
    """lancedb (≈1.2 s to import) and torch stay out of a handler until a call needs vectors."""
    code = (
        f"import sys, json; import functions.{name}.handler as h; assert callable(h.lambda_handler); "
        f"print(json.dumps(sorted(m for m in {VECTOR_MODULES!r} if m in sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == []


# ---------------------------------------------------------------- lake invoke of image functions

PROBE_HANDLER = """
from typing import Any

def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"event": event, "function_name": context.function_name}
"""


@pytest.fixture()
def image_probe(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A template with image functions: one named by its Dockerfile's CMD, one by ImageConfig."""
    package = f"lakeimage_{uuid.uuid4().hex[:8]}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "handler.py").write_text(PROBE_HANDLER)
    (tmp_path / "images" / "probe").mkdir(parents=True)
    (tmp_path / "images" / "probe" / "Dockerfile").write_text(
        "FROM public.ecr.aws/lambda/python:3.12\n"
        'CMD ["not.this.one"]\n'
        "COPY . ${LAMBDA_TASK_ROOT}\n"
        f'CMD [ "{package}.handler.lambda_handler" ]\n'
    )
    (tmp_path / "template.yaml").write_text(
        textwrap.dedent(f"""
        Transform: AWS::Serverless-2016-10-31
        Resources:
          FromDockerfile:
            Type: AWS::Serverless::Function
            Metadata:
              Dockerfile: images/probe/Dockerfile
              DockerContext: .
              DockerTag: v1
            Properties:
              PackageType: Image
              Timeout: 30
          FromImageConfig:
            Type: AWS::Serverless::Function
            Metadata:
              Dockerfile: images/probe/Dockerfile
              DockerContext: .
            Properties:
              PackageType: Image
              ImageConfig:
                Command: ["{package}.handler.lambda_handler"]
          NoCommand:
            Type: AWS::Serverless::Function
            Properties:
              PackageType: Image
        """)
    )
    yield tmp_path / "template.yaml", package
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[name]


def test_invoke_runs_an_image_function_by_its_command(
    image_probe: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    template, package = image_probe
    monkeypatch.setattr(invoke_module, "read_state", lambda _home: None)
    for logical_id in ("FromDockerfile", "FromImageConfig"):
        response = invoke(template, logical_id, {"n": 1}, tmp_path / "home")
        assert response == {"event": {"n": 1}, "function_name": logical_id}
    spec = function_spec(load_template(template), "FromDockerfile", template_dir=template.parent)
    assert (spec.handler, spec.code_uri, spec.timeout) == (f"{package}.handler.lambda_handler", ".", 30)


def test_an_image_function_without_a_command_is_an_invalid_template(image_probe: tuple[Path, str]) -> None:
    template, _ = image_probe
    loaded = load_template(template)
    with pytest.raises(TemplateInvalid, match="NoCommand is an image function without ImageConfig.Command"):
        function_spec(loaded, "NoCommand", template_dir=template.parent)
    with pytest.raises(TemplateInvalid, match="without ImageConfig.Command"):
        function_spec(loaded, "FromDockerfile")  # the Dockerfile is found relative to the template


def test_dockerfile_command_needs_an_exec_form_cmd(tmp_path: Path) -> None:
    shell_form = tmp_path / "Dockerfile"
    shell_form.write_text("FROM scratch\nCMD python app.py\n")
    with pytest.raises(TemplateInvalid, match="has no CMD"):
        dockerfile_command(shell_form)
    shell_form.write_text('FROM scratch\nCMD ["a.b", \\\n     "--flag"]\n')
    assert dockerfile_command(shell_form) == ["a.b", "--flag"]
    with pytest.raises(TemplateInvalid, match="cannot read the Dockerfile"):
        dockerfile_command(tmp_path / "missing")


def test_the_project_image_functions_resolve_their_handlers() -> None:
    """`lake invoke` reads the project's image functions' handlers like zip ones."""
    template = load_template(ROOT / "template.yaml")
    for name in HANDLERS:
        logical_id = f"{name.title()}Function"
        spec = function_spec(template, logical_id, template_dir=ROOT)
        assert spec.handler == f"functions.{name}.handler.lambda_handler"
        assert spec.code_uri == "."
