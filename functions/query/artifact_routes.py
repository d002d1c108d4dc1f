"""Routes of the query function: the artifact store (``/artifacts``).

Reads need a ``read`` key, changes a ``write`` key; artifacts are shared by every tenant, so a
tenant-bound key is refused. Content travels as text, or base64 for bytes (``content_encoding``).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from pydantic import BaseModel, ConfigDict, Field

from functions.query.common import COMMON, caller, error_responses
from lakehouse.access.auth import Scope
from lakehouse.artifacts import Artifact
from lakehouse.artifacts import ValidationError as ArtifactValidationError
from lakehouse.config import get_settings
from lakehouse.errors import Forbidden

if TYPE_CHECKING:
    from lakehouse.artifacts import BlockingArtifactStore

router = Router()

DataType = Literal["schema", "macro", "documentation", "configuration", "logs", "other"]
ContentEncoding = Literal["utf-8", "base64"]
MAX_CONTENT_CHARS = 8 << 20  # a function URL takes 6 MB bodies; `lake serve` a little more


class StoreRequest(BaseModel):
    """Body of ``POST /artifacts``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=255, description="File name; no '/'.")
    content: str = Field(max_length=MAX_CONTENT_CHARS, description="Text, or base64 of bytes.")
    content_encoding: ContentEncoding = Field("utf-8", description="utf-8 (text) or base64 (bytes).")
    data_type: DataType = Field("other", description="What the artifact is.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Any JSON object (≤ 64 KiB).")
    subpath: str = Field("", max_length=768, description="Folder, '/'-separated ('' is the root).")
    content_type: str | None = Field(None, min_length=1, max_length=255, description="MIME type.")


class UpdateRequest(BaseModel):
    """Body of ``PUT /artifacts/{artifact_id}``: what changes (at least one field)."""

    model_config = ConfigDict(extra="forbid")

    content: str | None = Field(None, max_length=MAX_CONTENT_CHARS, description="New content.")
    content_encoding: ContentEncoding = Field("utf-8", description="utf-8 (text) or base64 (bytes).")
    metadata: dict[str, Any] | None = Field(None, description="New metadata (replaces the old).")
    content_type: str | None = Field(None, min_length=1, max_length=255, description="New MIME type.")


class ArtifactBody(BaseModel):
    id: str
    name: str
    data_type: str
    subpath: str
    path: str
    metadata: dict[str, Any]
    size: int
    sha256: str
    content_type: str
    encoding: str
    version: int
    op: str
    created_at: str
    updated_at: str
    snapshot_id: int | None
    content: str | None = None
    content_encoding: str | None = None


class ArtifactList(BaseModel):
    artifacts: list[ArtifactBody]
    count: int


class HistoryBody(BaseModel):
    id: str
    versions: list[ArtifactBody]


class HitBody(BaseModel):
    artifact: ArtifactBody
    score: float
    text_rank: int | None
    similarity: float | None


class SearchBody(BaseModel):
    query: str
    mode: str
    hits: list[HitBody]
    warning: str | None


class StatsBody(BaseModel):
    artifacts: int
    by_type: dict[str, int]
    total_bytes: int
    text_artifacts: int
    binary_artifacts: int
    versions: int
    deleted: int
    last_update: str | None
    snapshot_id: int | None
    table: str


def _ok(model: type[BaseModel], text: str, status: int = 200) -> dict[int, Any]:
    return {status: {"description": text, "content": {"application/json": {"model": model}}}}


READ = {**COMMON, **_ok(ArtifactBody, "The artifact")}
FOUND = {**COMMON, **error_responses(404)}
AS_OF = "Iceberg snapshot id or ISO-8601 time: the artifacts as they were then."


def _store(scope: Scope) -> BlockingArtifactStore:
    from lakehouse.artifacts import store_for

    who = caller(router)
    who.require(scope)
    if who.tenant is not None:
        raise Forbidden("artifacts are shared by every tenant; a tenant key cannot use them")
    return store_for(get_settings())


def _content(content: str, encoding: str) -> str | bytes:
    if encoding == "utf-8":
        return content
    try:
        return base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ArtifactValidationError("content is not valid base64") from e


def _as_of(value: str | None) -> int | str | None:
    return int(value) if value is not None and value.strip().lstrip("-").isdigit() else value


def _one(artifact: Artifact, status: int = 200) -> Response[str]:
    router.append_context(target=artifact.id)
    body = json.dumps(artifact.to_dict(), ensure_ascii=False)
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


CREATED = {**{k: v for k, v in COMMON.items() if k != 200}, **_ok(ArtifactBody, "Stored", 201)}


@router.post("/artifacts", responses=CREATED)
def post_artifact(request: Annotated[StoreRequest, Body()]) -> Response[str]:
    store = _store("write")
    artifact = store.store(
        request.name,
        _content(request.content, request.content_encoding),
        request.data_type,
        request.metadata,
        request.subpath,
        request.content_type,
    )
    return _one(artifact, 201)


@router.get("/artifacts", responses={**COMMON, **_ok(ArtifactList, "Artifacts by path")})
def get_artifacts(
    data_type: Annotated[DataType | None, Query(description="Only this data type.")] = None,
    subpath: Annotated[str, Query(max_length=768, description="Folder ('' is the root).")] = "",
    recursive: Annotated[bool, Query(description="Include sub-folders.")] = True,
    as_of: Annotated[str | None, Query(max_length=64, description=AS_OF)] = None,
) -> dict[str, Any]:
    found = _store("read").list(data_type, subpath, recursive, _as_of(as_of))
    router.append_context(rows=len(found))
    return {"artifacts": [a.to_dict() for a in found], "count": len(found)}


@router.get("/artifacts/search", responses={**COMMON, **_ok(SearchBody, "Best hits first")})
def search_artifacts(
    q: Annotated[str, Query(min_length=1, max_length=10_000, description="Words or a question.")],
    data_type: Annotated[DataType | None, Query(description="Only this data type.")] = None,
    subpath: Annotated[str, Query(max_length=768, description="Only in this folder and below.")] = "",
    limit: Annotated[int, Query(ge=1, le=1000, description="Most hits returned.")] = 10,
) -> dict[str, Any]:
    results = _store("read").search(q, data_type, subpath or None, limit)
    router.append_context(rows=len(results.hits))
    return results.to_dict()


@router.get("/artifacts/stats", responses={**COMMON, **_ok(StatsBody, "Counts and sizes")})
def artifact_stats() -> dict[str, Any]:
    return _store("read").get_stats()


@router.get("/artifacts/by-path", responses={**READ, **error_responses(404)})
def artifact_by_path(
    path: Annotated[str, Query(min_length=1, max_length=1024, description="subpath/name")],
    as_of: Annotated[str | None, Query(max_length=64, description=AS_OF)] = None,
) -> Response[str]:
    return _one(_store("read").retrieve_by_path(path, _as_of(as_of)))


@router.get("/artifacts/<artifact_id>", responses={**READ, **error_responses(404)})
def get_artifact(
    artifact_id: str,
    version: Annotated[int | None, Query(ge=1, description="A version from the history.")] = None,
    as_of: Annotated[str | None, Query(max_length=64, description=AS_OF)] = None,
) -> Response[str]:
    return _one(_store("read").retrieve(artifact_id, version, _as_of(as_of)))


@router.get(
    "/artifacts/<artifact_id>/history", responses={**FOUND, **_ok(HistoryBody, "Every version, oldest first")}
)
def artifact_history(artifact_id: str) -> dict[str, Any]:
    router.append_context(target=artifact_id)
    versions = _store("read").history(artifact_id)
    return {"id": artifact_id, "versions": [v.to_dict() for v in versions]}


@router.put("/artifacts/<artifact_id>", responses={**READ, **error_responses(404)})
def put_artifact(artifact_id: str, request: Annotated[UpdateRequest, Body()]) -> Response[str]:
    store = _store("write")
    content = None if request.content is None else _content(request.content, request.content_encoding)
    return _one(store.update(artifact_id, content, request.metadata, request.content_type))


@router.delete("/artifacts/<artifact_id>", responses={**READ, **error_responses(404)})
def delete_artifact(artifact_id: str) -> Response[str]:
    return _one(_store("write").delete(artifact_id))
