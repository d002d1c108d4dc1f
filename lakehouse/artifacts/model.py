"""What the artifact store deals in: artifacts, their data types, search hits, and its errors."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import unicodedata
from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

from lakehouse.errors import BadRequest, LakeError, NotFound

DataType = Literal["schema", "macro", "documentation", "configuration", "logs", "other"]
DATA_TYPES: tuple[str, ...] = get_args(DataType)
Op = Literal["store", "update", "delete"]

MAX_NAME_CHARS = 255
MAX_PATH_CHARS = 1024
MAX_METADATA_BYTES = 64 << 10
MAX_CONTENT_BYTES = 64 << 20
TEXT = "utf-8"
BINARY = "binary"


class ArtifactError(LakeError):
    """Base of every error the artifact store raises."""


class NotFoundError(ArtifactError, NotFound):
    """No artifact with that id, path or version (or it was deleted)."""

    terminal = True
    http_status = 404


class ValidationError(ArtifactError, BadRequest):
    """A name, path, data type, metadata or content the artifact store does not accept."""

    terminal = True
    http_status = 400


@dataclass(frozen=True)
class Artifact:
    """One version of an artifact. ``content`` is set only where it was asked for (retrieve)."""

    id: str
    name: str
    data_type: str
    subpath: str
    path: str
    metadata: dict[str, Any]
    size: int
    sha256: str
    content_type: str
    encoding: str  # "utf-8" (content is text) or "binary" (content is bytes)
    version: int
    op: str  # the change that made this version: store, update or delete
    created_at: dt.datetime
    updated_at: dt.datetime
    snapshot_id: int | None = None  # the Iceberg snapshot that committed this version
    content: str | bytes | None = field(default=None, repr=False)

    @property
    def deleted(self) -> bool:
        return self.op == "delete"

    def with_content(self, content: str | bytes | None) -> Artifact:
        return replace(self, content=content)

    def to_dict(self, content: bool = True) -> dict[str, Any]:
        """JSON-ready: times as ISO-8601, bytes content as base64 (``content_encoding``)."""
        body: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "data_type": self.data_type,
            "subpath": self.subpath,
            "path": self.path,
            "metadata": self.metadata,
            "size": self.size,
            "sha256": self.sha256,
            "content_type": self.content_type,
            "encoding": self.encoding,
            "version": self.version,
            "op": self.op,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "snapshot_id": self.snapshot_id,
        }
        if content and self.content is not None:
            if isinstance(self.content, bytes):
                body["content"] = base64.b64encode(self.content).decode()
                body["content_encoding"] = "base64"
            else:
                body["content"] = self.content
                body["content_encoding"] = "utf-8"
        return body


@dataclass(frozen=True)
class SearchHit:
    """One search result: the artifact (without content), its fused score and why it matched."""

    artifact: Artifact
    score: float
    text_rank: int | None  # 1-based rank among full-text matches, None: no word matched
    similarity: float | None  # cosine similarity of meaning, None: not a semantic match

    def to_dict(self) -> dict[str, Any]:
        return {
            "artifact": self.artifact.to_dict(content=False),
            "score": self.score,
            "text_rank": self.text_rank,
            "similarity": self.similarity,
        }


@dataclass(frozen=True)
class SearchResults:
    """Best hits first; ``mode`` is ``hybrid`` (words and meaning) or ``text`` (words only)."""

    query: str
    mode: str
    hits: list[SearchHit]
    warning: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "mode": self.mode,
            "hits": [h.to_dict() for h in self.hits],
            "warning": self.warning,
        }


# --- validation -----------------------------------------------------------------------------

_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f\\]")


def _check_text(value: str, what: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValidationError(f"{what} is not valid Unicode text") from e
    if _FORBIDDEN.search(value) or any(unicodedata.category(c) == "Cs" for c in value):
        raise ValidationError(f"{what} holds a control character or a backslash")


def check_data_type(data_type: str) -> str:
    if data_type not in DATA_TYPES:
        raise ValidationError(f"data_type {data_type!r} is not one of {', '.join(DATA_TYPES)}")
    return data_type


def check_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("an artifact needs a name")
    if name != name.strip():
        raise ValidationError("a name cannot start or end with white space")
    if len(name) > MAX_NAME_CHARS:
        raise ValidationError(f"a name is at most {MAX_NAME_CHARS} characters")
    if "/" in name or name in (".", ".."):
        raise ValidationError("a name cannot hold '/' or be '.' or '..' (put folders in subpath)")
    _check_text(name, "the name")
    return name


def normalise_subpath(subpath: str | None) -> str:
    """``"/a//b/"`` → ``"a/b"``; ``None`` and ``""`` are the root. No ``.``/``..`` segments."""
    if subpath is None:
        return ""
    if not isinstance(subpath, str):
        raise ValidationError("subpath must be text")
    parts = [p for p in subpath.split("/") if p]
    for part in parts:
        if part in (".", "..") or part != part.strip():
            raise ValidationError(f"subpath segment {part!r} is not allowed")
    joined = "/".join(parts)
    _check_text(joined, "the subpath")
    if len(joined) > MAX_PATH_CHARS - MAX_NAME_CHARS:
        raise ValidationError("the subpath is too long")
    return joined


def join_path(subpath: str, name: str) -> str:
    return f"{subpath}/{name}" if subpath else name


def split_path(path: str) -> tuple[str, str]:
    """``"a/b/c"`` → ``("a/b", "c")`` (normalised)."""
    if not isinstance(path, str) or not path.strip("/"):
        raise ValidationError("a path needs at least a name")
    parts = [p for p in path.split("/") if p]
    return normalise_subpath("/".join(parts[:-1])), check_name(parts[-1])


def check_metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """A JSON object of at most 64 KiB (keys are text; no NaN or infinity)."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise ValidationError("metadata must be a JSON object")
    try:
        text = json.dumps(metadata, allow_nan=False, ensure_ascii=False, sort_keys=True)
        encoded = text.encode("utf-8")
    except (TypeError, ValueError) as e:
        raise ValidationError(f"metadata is not a JSON object: {e}") from e
    if len(encoded) > MAX_METADATA_BYTES:
        raise ValidationError(f"metadata is larger than {MAX_METADATA_BYTES} bytes as JSON")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def encode_content(content: str | bytes) -> tuple[bytes, str]:
    """The bytes to store and their encoding (``utf-8`` for text, ``binary`` for bytes)."""
    if isinstance(content, str):
        try:
            data = content.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValidationError("content text is not valid Unicode") from e
        encoding = TEXT
    elif isinstance(content, bytes | bytearray | memoryview):
        data, encoding = bytes(content), BINARY
    else:
        raise ValidationError("content must be text or bytes")
    if len(data) > MAX_CONTENT_BYTES:
        raise ValidationError(f"content is larger than {MAX_CONTENT_BYTES} bytes")
    return data, encoding


def decode_content(data: bytes, encoding: str) -> str | bytes:
    return data.decode("utf-8") if encoding == TEXT else data


def check_content_type(content_type: str | None, encoding: str) -> str:
    if content_type is None:
        return "text/plain; charset=utf-8" if encoding == TEXT else "application/octet-stream"
    if not content_type.strip() or len(content_type) > 255:
        raise ValidationError("content_type must be 1 to 255 characters")
    _check_text(content_type, "content_type")
    return content_type
