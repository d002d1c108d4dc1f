"""A read-through cache of immutable warehouse objects (Iceberg data files) on local disk.

Iceberg never rewrites a data file in place: a path names the same bytes forever, so a local
copy keyed by path is always correct. Copies live under ``$LAKE_HOME/file-cache`` (on Lambda
under ``/tmp``), bounded by ``LAKE_QUERY_CACHE_BYTES`` per process: least recently used out.
``LAKE_QUERY_CACHE_BYTES=0`` turns the cache off (every read goes to the store).

:class:`CachedFiles` is the pyarrow filesystem that query scans read through. It opens only the
paths it was given (the request's planned files), counts what it served, and refuses any other.
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from lakehouse.config import Settings


@dataclass
class ScanStats:
    """What one request's scans did: files planned and opened, bytes from cache and store."""

    files_planned: int = 0
    files_read: int = 0
    bytes_from_cache: int = 0
    bytes_from_store: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def to_dict(self) -> dict[str, int]:
        return {
            "files_planned": self.files_planned,
            "files_read": self.files_read,
            "bytes_from_cache": self.bytes_from_cache,
            "bytes_from_store": self.bytes_from_store,
        }


class FileCache:
    """Local copies of immutable objects, least recently used evicted past ``max_bytes``."""

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.entries: OrderedDict[str, int] = OrderedDict()
        self.total = 0
        self.lock = threading.Lock()
        folder.mkdir(parents=True, exist_ok=True)
        found = sorted((p for p in folder.iterdir() if p.suffix == ".bin"), key=lambda p: p.stat().st_mtime)
        for path in found:
            size = path.stat().st_size
            self.entries[path.name] = size
            self.total += size
        self._evict()

    @staticmethod
    def name(uri: str) -> str:
        return hashlib.sha256(uri.encode()).hexdigest() + ".bin"

    def lookup(self, uri: str) -> Path | None:
        name = self.name(uri)
        with self.lock:
            if name not in self.entries:
                return None
            self.entries.move_to_end(name)
        path = self.folder / name
        if not path.exists():  # removed by another process's eviction
            with self.lock:
                self.total -= self.entries.pop(name, 0)
            return None
        return path

    def add(self, uri: str, data: bytes) -> Path | None:
        """Keep ``data`` as the copy of ``uri``; None when it is larger than the whole cache."""
        if len(data) > self.max_bytes:
            return None
        name = self.name(uri)
        path = self.folder / name
        tmp = self.folder / f"{name}.{uuid.uuid4().hex}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, path)
        with self.lock:
            if name not in self.entries:
                self.entries[name] = len(data)
                self.total += len(data)
            self.entries.move_to_end(name)
        self._evict()
        return path

    def _evict(self) -> None:
        with self.lock:
            while self.total > self.max_bytes and self.entries:
                name, size = self.entries.popitem(last=False)
                self.total -= size
                (self.folder / name).unlink(missing_ok=True)


_caches: dict[tuple[str, int], FileCache] = {}
_caches_lock = threading.Lock()


def file_cache(settings: Settings) -> FileCache | None:
    """The process's cache for these settings (None when ``LAKE_QUERY_CACHE_BYTES`` is 0)."""
    if settings.query_cache_bytes <= 0:
        return None
    folder = settings.home / "file-cache"
    key = (str(folder.resolve()), settings.query_cache_bytes)
    with _caches_lock:
        cache = _caches.get(key)
        if cache is None:
            cache = _caches[key] = FileCache(folder, settings.query_cache_bytes)
    return cache


class CachedFiles(pafs.FileSystemHandler):
    """A read-only pyarrow filesystem over exactly ``allowed`` (``bucket/key`` → size)."""

    def __init__(
        self, store: pafs.FileSystem, cache: FileCache | None, allowed: dict[str, int], stats: ScanStats
    ) -> None:
        self.store = store
        self.cache = cache
        self.allowed = allowed
        self.stats = stats

    def _check(self, path: str) -> None:
        if path not in self.allowed:
            raise PermissionError(f"{path} is not a planned file of this query")

    def open_input_file(self, path: str) -> pa.NativeFile:
        self._check(path)
        uri = f"s3://{path}"
        if self.cache is not None and (local := self.cache.lookup(uri)) is not None:
            size = local.stat().st_size
            with self.stats.lock:
                self.stats.files_read += 1
                self.stats.bytes_from_cache += size
            return pa.memory_map(str(local))
        with self.store.open_input_file(path) as remote:
            data = remote.read()
        with self.stats.lock:
            self.stats.files_read += 1
            self.stats.bytes_from_store += len(data)
        if self.cache is not None and (local := self.cache.add(uri, data)) is not None:
            return pa.memory_map(str(local))
        return pa.BufferReader(data)

    def local_copies(self, paths: list[str]) -> list[str] | None:
        """Local copies of ``paths``, fetched now (in parallel) where not cached; None when the
        cache is off or could not keep them all at once (up to half of it)."""
        from concurrent.futures import ThreadPoolExecutor

        if self.cache is None or sum(self.allowed[p] for p in paths) > self.cache.max_bytes // 2:
            return None
        cache = self.cache

        def copy(path: str) -> Path | None:
            self._check(path)
            uri = f"s3://{path}"
            if (local := cache.lookup(uri)) is not None:
                with self.stats.lock:
                    self.stats.files_read += 1
                    self.stats.bytes_from_cache += self.allowed[path]
                return local
            with self.store.open_input_file(path) as remote:
                data = remote.read()
            with self.stats.lock:
                self.stats.files_read += 1
                self.stats.bytes_from_store += len(data)
            return cache.add(uri, data)

        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="lake-fetch") as pool:
            copies = list(pool.map(copy, paths))
        return None if any(c is None for c in copies) else [str(c) for c in copies]

    def open_input_stream(self, path: str) -> pa.NativeFile:
        return self.open_input_file(path)

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        out = []
        for path in paths:
            self._check(path)
            out.append(pafs.FileInfo(path, pafs.FileType.File, size=self.allowed[path]))
        return out

    def get_type_name(self) -> str:
        return "lake-planned-files"

    def equals(self, other: Any) -> bool:
        return other is self

    def normalize_path(self, path: str) -> str:
        return path

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise PermissionError("query scans are read-only")

    get_file_info_selector = create_dir = delete_dir = delete_dir_contents = _read_only
    delete_root_dir_contents = delete_file = move = copy_file = _read_only
    open_output_stream = open_append_stream = _read_only
