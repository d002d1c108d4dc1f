"""The one client of the query API, used by the CLI and the tests.

It calls the query function in process (building the function URL event, as AWS would) or,
given a base URL, over HTTP (``lake serve`` or a deployed function URL). Everything that
changes how an endpoint is called (authentication) changes here.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlencode

from lake.local.events import LambdaContext, function_url_event


@dataclass
class ApiResponse:
    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class LakeClient:
    """Talks to the query function: in process (``base_url=None``) or over HTTP."""

    def __init__(self, base_url: str | None = None, key: str | None = None, timeout: float = 120.0) -> None:
        self.base_url = base_url.rstrip("/") if base_url else None
        self.headers = {"authorization": f"Bearer {key}"} if key else {}
        self.timeout = timeout

    def request(
        self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None
    ) -> ApiResponse:
        if self.base_url is None:
            return self._in_process(method, path, body, query)
        return self._http(method, path, body, query)

    def _in_process(self, method: str, path: str, body: Any, query: dict[str, str] | None) -> ApiResponse:
        from functions.query.handler import lambda_handler

        event = function_url_event(method, path, body, query, self.headers)
        result = lambda_handler(event, cast(Any, LambdaContext("lake-query", timeout_seconds=self.timeout)))
        raw = result.get("body") or ""
        if result.get("isBase64Encoded"):
            raw = base64.b64decode(raw).decode()
        return ApiResponse(int(result.get("statusCode", 200)), json.loads(raw) if raw else None)

    def _http(self, method: str, path: str, body: Any, query: dict[str, str] | None) -> ApiResponse:
        url = f"{self.base_url}{path}" + (f"?{urlencode(query)}" if query else "")
        data = json.dumps(body).encode() if body is not None else None
        headers = {"content-type": "application/json", **self.headers}
        req = urllib.request.Request(url, data=data, method=method.upper(), headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        return ApiResponse(status, json.loads(raw) if raw else None)

    def sql(self, sql: str, as_of: int | str | None = None, explain: bool = False) -> ApiResponse:
        body: dict[str, Any] = {"sql": sql}
        if as_of is not None:
            body["as_of"] = as_of
        if explain:
            body["explain"] = True
        return self.request("POST", "/sql", body)

    def search(
        self,
        dataset: str,
        text: str | None = None,
        vector: list[float] | None = None,
        k: int = 10,
        mode: str | None = None,
        filter: str | None = None,
        as_of: int | str | None = None,
    ) -> ApiResponse:
        """``POST /search``: the ``k`` best rows of a dataset with vectors for a text or a vector."""
        body: dict[str, Any] = {"dataset": dataset, "k": k}
        for name, value in (("text", text), ("vector", vector), ("mode", mode), ("filter", filter)):
            if value is not None:
                body[name] = value
        if as_of is not None:
            body["as_of"] = as_of
        return self.request("POST", "/search", body)

    def tables(self) -> ApiResponse:
        return self.request("GET", "/tables")

    def describe(self, name: str) -> ApiResponse:
        return self.request("GET", f"/tables/{name}")

    def health(self, kind: str = "ready") -> ApiResponse:
        return self.request("GET", f"/health/{kind}")

    def snapshots(self, name: str) -> ApiResponse:
        return self.request("GET", f"/tables/{name}/snapshots")

    def quarantine(self, dataset: str, source: str | None = None, limit: int | None = None) -> ApiResponse:
        query: dict[str, str] = {}
        if source is not None:
            query["source"] = source
        if limit is not None:
            query["limit"] = str(limit)
        return self.request("GET", f"/quarantine/{dataset}", query=query or None)

    def timeseries(
        self,
        table: str,
        agg: str,
        bucket: str,
        column: str | None = None,
        start: str | None = None,
        end: str | None = None,
        group_by: str | None = None,
        explain: bool = False,
    ) -> ApiResponse:
        """``GET /timeseries/{table}``: ``agg(column)`` per time ``bucket`` in ``[start, end)``."""
        params = {"column": column, "agg": agg, "bucket": bucket, "from": start, "to": end}
        params["group_by"] = group_by
        query = {k: v for k, v in params.items() if v is not None}
        if explain:
            query["explain"] = "true"
        return self.request("GET", f"/timeseries/{table}", query=query)

    def geo(
        self,
        table: str,
        bbox: tuple[float, float, float, float] | None = None,
        near: tuple[float, float] | None = None,
        radius_m: float | None = None,
        start: str | None = None,
        end: str | None = None,
        explain: bool = False,
    ) -> ApiResponse:
        """``GET /geo/{table}``: rows in ``bbox`` (minlon, minlat, maxlon, maxlat) or within
        ``radius_m`` of ``near`` (lon, lat), nearest first."""
        query: dict[str, str] = {}
        if bbox is not None:
            query["bbox"] = ",".join(repr(float(v)) for v in bbox)
        if near is not None:
            query["near"] = ",".join(repr(float(v)) for v in near)
        if radius_m is not None:
            query["radius_m"] = repr(float(radius_m))
        for name, value in (("from", start), ("to", end)):
            if value is not None:
                query[name] = value
        if explain:
            query["explain"] = "true"
        return self.request("GET", f"/geo/{table}", query=query)

    def changes(self, name: str, from_: int | str, to: int | str | None = None) -> ApiResponse:
        query = {"from": str(from_)}
        if to is not None:
            query["to"] = str(to)
        return self.request("GET", f"/tables/{name}/changes", query=query)

    # --- artifact store (/artifacts) -------------------------------------------------------------

    @staticmethod
    def _content(content: str | bytes) -> dict[str, str]:
        if isinstance(content, bytes):
            return {"content": base64.b64encode(content).decode(), "content_encoding": "base64"}
        return {"content": content, "content_encoding": "utf-8"}

    def artifact_store(
        self,
        name: str,
        content: str | bytes,
        data_type: str = "other",
        metadata: dict[str, Any] | None = None,
        subpath: str = "",
        content_type: str | None = None,
    ) -> ApiResponse:
        """``POST /artifacts``: store a new artifact at ``subpath/name`` (bytes go as base64)."""
        body: dict[str, Any] = {"name": name, "data_type": data_type, "subpath": subpath}
        body.update(self._content(content))
        if metadata is not None:
            body["metadata"] = metadata
        if content_type is not None:
            body["content_type"] = content_type
        return self.request("POST", "/artifacts", body)

    def artifact(
        self, artifact_id: str, version: int | None = None, as_of: int | str | None = None
    ) -> ApiResponse:
        """``GET /artifacts/{id}``: metadata and content (now, a version, or as of a snapshot/time)."""
        query = {k: str(v) for k, v in (("version", version), ("as_of", as_of)) if v is not None}
        return self.request("GET", f"/artifacts/{artifact_id}", query=query or None)

    def artifact_by_path(self, path: str, as_of: int | str | None = None) -> ApiResponse:
        query = {"path": path} if as_of is None else {"path": path, "as_of": str(as_of)}
        return self.request("GET", "/artifacts/by-path", query=query)

    def artifacts(
        self,
        data_type: str | None = None,
        subpath: str = "",
        recursive: bool = True,
        as_of: int | str | None = None,
    ) -> ApiResponse:
        """``GET /artifacts``: current artifacts in a folder (and below, if ``recursive``)."""
        query = {"subpath": subpath, "recursive": "true" if recursive else "false"}
        if data_type is not None:
            query["data_type"] = data_type
        if as_of is not None:
            query["as_of"] = str(as_of)
        return self.request("GET", "/artifacts", query=query)

    def artifact_search(
        self, q: str, data_type: str | None = None, subpath: str = "", limit: int = 10
    ) -> ApiResponse:
        """``GET /artifacts/search``: by words and meaning, best first."""
        query = {"q": q, "subpath": subpath, "limit": str(limit)}
        if data_type is not None:
            query["data_type"] = data_type
        return self.request("GET", "/artifacts/search", query=query)

    def artifact_update(
        self,
        artifact_id: str,
        content: str | bytes | None = None,
        metadata: dict[str, Any] | None = None,
        content_type: str | None = None,
    ) -> ApiResponse:
        """``PUT /artifacts/{id}``: a new version with new content and/or metadata."""
        body: dict[str, Any] = {} if content is None else self._content(content)
        if metadata is not None:
            body["metadata"] = metadata
        if content_type is not None:
            body["content_type"] = content_type
        return self.request("PUT", f"/artifacts/{artifact_id}", body)

    def artifact_delete(self, artifact_id: str) -> ApiResponse:
        return self.request("DELETE", f"/artifacts/{artifact_id}")

    def artifact_history(self, artifact_id: str) -> ApiResponse:
        return self.request("GET", f"/artifacts/{artifact_id}/history")

    def artifact_stats(self) -> ApiResponse:
        return self.request("GET", "/artifacts/stats")
