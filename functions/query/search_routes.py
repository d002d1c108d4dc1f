"""Routes of the query function: search over a dataset's vectors and text (``POST /search``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import BaseModel, ConfigDict, Field

from functions.query.common import COMMON, caller, error_responses
from lakehouse.config import get_settings
from lakehouse.duck import with_id_strings
from lakehouse.query.sqlguard import MAX_K

router = Router()


class SearchRequest(BaseModel):
    """Body of ``POST /search``."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(min_length=1, max_length=128, description="A dataset whose contract has `vectors:`.")
    text: str | None = Field(None, min_length=1, max_length=10_000, description="What to search for.")
    vector: list[float] | None = Field(None, min_length=1, max_length=8192, description="A query vector.")
    k: int = Field(10, ge=1, le=MAX_K, description="Rows to return.")
    mode: Literal["vector", "text", "hybrid"] | None = Field(
        None,
        description="vector (meaning), text (words, BM25), hybrid (both, rank-fused). Default: hybrid "
        "for text where the dataset embeds text, else vector.",
    )
    filter: str | None = Field(
        None, min_length=1, max_length=10_000, description="SQL predicate on the table's columns."
    )
    as_of: int | str | None = Field(
        None, description="Snapshot id (a number or a string of digits) or ISO-8601 time of the table."
    )


class SearchResponse(BaseModel):
    columns: list[str]
    types: list[str]
    rows: list[list[Any]]
    row_count: int
    dataset: str
    mode: str
    snapshot_id: int | None
    snapshot_id_str: str | None = Field(
        None, description="The snapshot id as a string (exact in JavaScript)."
    )
    lance_version: int | None
    candidates: int
    elapsed_ms: float


@router.post(
    "/search",
    responses={
        **COMMON,
        **error_responses(404),
        200: {"description": "Best rows first", "content": {"application/json": {"model": SearchResponse}}},
    },
)
def post_search(request: Annotated[SearchRequest, Body()]) -> dict[str, Any]:
    from lakehouse.query.search import search

    router.append_context(target=request.dataset)
    result = search(
        get_settings(),
        request.dataset,
        text=request.text,
        vector=request.vector,
        k=request.k,
        filter=request.filter,
        as_of=request.as_of,
        mode=request.mode,
        principal=caller(router),
    )
    router.append_context(rows=len(result.rows))
    return with_id_strings(result.to_dict())


@router.get("/vectors", responses=COMMON)
def get_vectors() -> dict[str, Any]:
    from lakehouse.query.search import vector_datasets

    return {"datasets": vector_datasets(get_settings(), principal=caller(router))}


@router.get("/vectors/<dataset>", responses={**COMMON, **error_responses(404)})
def get_vector_status(dataset: str) -> dict[str, Any]:
    from lakehouse.query.search import vector_status

    router.append_context(target=dataset)
    return vector_status(get_settings(), dataset, principal=caller(router))
