"""Reading a Takeout archive from the object store without downloading or extracting it.

A ``.zip`` is opened as a seekable, buffered object reader (:func:`lakehouse.storage.open_object`):
:mod:`zipfile` reads the central directory at the end of the object and then each member's
bytes with ranged GETs, so members can be listed, split into ranges and read in parallel (each
worker its own handle). A ``.tgz`` /
``.tar.gz`` / ``.tar`` is a stream: members come in order and a range skips what precedes it.

Every member is checked before a byte of it is read (:func:`check_member`): names that
traverse or are absolute, symlinks and other special entries, encrypted members, declared
sizes and compression ratios over the limits. While it is read, :class:`LimitedReader` keeps
counting, so a header that lies about its size cannot inflate past the limits either.
"""

from __future__ import annotations

import re
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

from lakehouse.config import Settings
from lakehouse.errors import ArchiveTooLarge, ArchiveUnreadable, CorruptMember, UnsafeMember

ZIP_SUFFIXES = (".zip",)
TAR_SUFFIXES = (".tgz", ".tar.gz", ".tar")
NESTED_SUFFIXES = (".zip", ".tgz", ".tar", ".gz", ".bz2", ".xz", ".7z", ".rar", ".jar", ".kmz")
RATIO_FLOOR = 1 << 20  # members smaller than 1 MiB cannot be bombs worth the name; no ratio check
_DRIVE = re.compile(r"^[A-Za-z]:")


def archive_kind(key: str) -> str | None:
    """``zip``, ``tar`` or None (not an archive Lake expands)."""
    lower = key.lower()
    if lower.endswith(ZIP_SUFFIXES):
        return "zip"
    if lower.endswith(TAR_SUFFIXES):
        return "tar"
    return None


@dataclass(frozen=True)
class Member:
    """One entry of an archive, as its directory (zip) or header (tar) describes it."""

    index: int
    path: str
    size: int  # declared uncompressed bytes
    compressed_size: int  # zip: stored bytes; tar: same as size (the stream is compressed as a whole)
    is_dir: bool = False
    is_symlink: bool = False
    is_special: bool = False  # hard links, devices, fifos
    encrypted: bool = False

    @property
    def nested_archive(self) -> bool:
        return self.path.lower().endswith(NESTED_SUFFIXES)


def safe_path(path: str) -> str:
    """The member path if it is safe to name, else :class:`UnsafeMember` (rule ``path``)."""
    if not path or "\x00" in path:
        raise UnsafeMember("path", f"member name {path!r} is empty or holds a NUL byte")
    if path.startswith(("/", "\\")) or _DRIVE.match(path):
        raise UnsafeMember("path", f"member {path!r} has an absolute path")
    if any(part == ".." for part in re.split(r"[/\\]", path)):
        raise UnsafeMember("path", f"member {path!r} traverses out of the archive ('..')")
    return path


def check_member(member: Member, settings: Settings) -> None:
    """Refuse a member before reading it (each refusal names the rule it broke)."""
    safe_path(member.path)
    if member.is_symlink:
        raise UnsafeMember("symlink", f"member {member.path!r} is a symbolic link; links are not followed")
    if member.is_special:
        raise UnsafeMember("special", f"member {member.path!r} is not a regular file (hard link or device)")
    if member.encrypted:
        raise UnsafeMember("encrypted", f"member {member.path!r} is encrypted; Lake cannot read it")
    if member.size > settings.takeout_max_member_bytes:
        raise UnsafeMember(
            "size",
            f"member {member.path!r} declares {member.size} bytes, over LAKE_TAKEOUT_MAX_MEMBER_BYTES "
            f"({settings.takeout_max_member_bytes})",
        )
    if member.size > RATIO_FLOOR and member.size > member.compressed_size * settings.takeout_max_ratio:
        ratio = member.size / max(member.compressed_size, 1)
        raise UnsafeMember(
            "ratio",
            f"member {member.path!r} expands {ratio:,.0f}x ({member.compressed_size} → {member.size} bytes), "
            f"over LAKE_TAKEOUT_MAX_RATIO ({settings.takeout_max_ratio:g}): a zip bomb",
        )


class LimitedReader:
    """Reads a member, failing once it yields more than it may (size or ratio), whatever its header said."""

    def __init__(self, raw: IO[bytes], member: Member, settings: Settings) -> None:
        self.raw = raw
        self.member = member
        self.read_bytes = 0
        # Whatever the header says, a member may inflate to at most ratio × its stored bytes.
        self.limit = min(
            settings.takeout_max_member_bytes,
            max(int(member.compressed_size * settings.takeout_max_ratio), RATIO_FLOOR),
        )

    def read(self, n: int = -1) -> bytes:
        try:
            data = self.raw.read(n)
        except (zipfile.BadZipFile, zlib.error, EOFError, tarfile.TarError, OSError) as e:
            raise CorruptMember("corrupt", f"member {self.member.path!r} is corrupt: {e}") from e
        self.read_bytes += len(data)
        if self.read_bytes > self.limit:
            raise UnsafeMember(
                "ratio",
                f"member {self.member.path!r} inflates past {self.limit} bytes although it declares "
                f"{self.member.size}: a zip bomb",
            )
        return data


# --- zip ------------------------------------------------------------------------------------


def _zip_member(index: int, info: zipfile.ZipInfo) -> Member:
    mode = info.external_attr >> 16
    return Member(
        index=index,
        path=info.filename,
        size=info.file_size,
        compressed_size=info.compress_size,
        is_dir=info.is_dir(),
        is_symlink=stat.S_ISLNK(mode),
        # Unix file-type bits, when the writer set any (many zips leave them 0: a regular file).
        is_special=stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK),
        encrypted=bool(info.flag_bits & 0x1),
    )


_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # zipfile's structFileHeader
_LOCAL_MAGIC = b"PK\x03\x04"


def _open_entry(handle: IO[bytes], info: zipfile.ZipInfo) -> IO[bytes]:
    """A member's decompressing reader (CRC checked at its end), from its local header on."""
    handle.seek(info.header_offset)
    header = handle.read(_LOCAL_HEADER.size)
    if len(header) != _LOCAL_HEADER.size:
        raise zipfile.BadZipFile("truncated local file header")
    fields = _LOCAL_HEADER.unpack(header)
    if fields[0] != _LOCAL_MAGIC:
        raise zipfile.BadZipFile("bad magic number for a local file header")
    name_length, extra_length = fields[10], fields[11]
    handle.seek(info.header_offset + _LOCAL_HEADER.size + name_length + extra_length)
    if info.flag_bits & 0x1:
        raise RuntimeError(f"member {info.filename!r} is encrypted")
    return zipfile.ZipExtFile(handle, "r", info, None, False)  # type: ignore[return-value]


class ZipArchive:
    """A zip read by ranged GETs; every :meth:`open_reader` gets its own handle (thread-safe)."""

    def __init__(self, opener: Callable[[], IO[bytes]], uri: str) -> None:
        self.opener = opener
        self.uri = uri
        self.handle = opener()
        try:
            self.zf = zipfile.ZipFile(self.handle)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
            self.handle.close()
            raise ArchiveUnreadable(f"{uri} is not a readable zip archive: {e}") from e
        self.infos = self.zf.infolist()
        self.members = [_zip_member(i, info) for i, info in enumerate(self.infos)]

    def total_size(self) -> int:
        return sum(m.size for m in self.members)

    @contextmanager
    def worker(self) -> Iterator[Callable[[Member], IO[bytes]]]:
        """An opener of members on a handle of the worker's own.

        The central directory is parsed once, by the archive: a worker finds a member's bytes
        from its directory entry and local header (a real export holds hundreds of thousands
        of members; a copy of the directory per worker would grow with them).
        """
        handle = self.opener()
        try:

            def open_member(member: Member) -> IO[bytes]:
                info = self.infos[member.index]
                try:
                    return _open_entry(handle, info)
                except (zipfile.BadZipFile, NotImplementedError, RuntimeError, zlib.error, OSError) as e:
                    raise CorruptMember("corrupt", f"member {member.path!r} cannot be opened: {e}") from e

            yield open_member
        finally:
            handle.close()

    def close(self) -> None:
        self.zf.close()
        self.handle.close()


# --- tar ------------------------------------------------------------------------------------


def _tar_member(index: int, info: tarfile.TarInfo) -> Member:
    return Member(
        index=index,
        path=info.name,
        size=info.size,
        compressed_size=info.size,
        is_dir=info.isdir(),
        is_symlink=info.issym(),
        is_special=not (info.isreg() or info.isdir() or info.issym()),
    )


def iter_tar(
    stream: IO[bytes], uri: str, settings: Settings
) -> Iterator[tuple[Member, Callable[[], IO[bytes]] | None]]:
    """Stream a tar (gzip or not): each member with an opener of its bytes (None for non-files).

    The running total of member sizes is held to ``LAKE_TAKEOUT_MAX_TOTAL_BYTES``.
    """
    total = 0
    try:
        tar = tarfile.open(fileobj=stream, mode="r|*")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise ArchiveUnreadable(f"{uri} is not a readable tar or tgz archive: {e}") from e
    index = 0
    try:
        while True:
            try:
                info = tar.next()
            except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
                raise ArchiveUnreadable(f"{uri}: the tar stream breaks after member {index}: {e}") from e
            if info is None:
                return
            member = _tar_member(index, info)
            index += 1
            total += member.size
            if total > settings.takeout_max_total_bytes:
                raise ArchiveTooLarge(
                    f"{uri}: members add up to more than LAKE_TAKEOUT_MAX_TOTAL_BYTES "
                    f"({settings.takeout_max_total_bytes})"
                )
            if info.isreg():
                captured = info

                def opener(info: tarfile.TarInfo = captured) -> IO[bytes]:
                    f = tar.extractfile(info)
                    assert f is not None
                    return f

                yield member, opener
            else:
                yield member, None
    finally:
        tar.close()


def check_total(members: list[Member], uri: str, settings: Settings) -> None:
    total = sum(m.size for m in members)
    if total > settings.takeout_max_total_bytes:
        raise ArchiveTooLarge(
            f"{uri}: members declare {total} bytes uncompressed, over LAKE_TAKEOUT_MAX_TOTAL_BYTES "
            f"({settings.takeout_max_total_bytes}); nothing was ingested"
        )


def plan_ranges(members: list[Member], range_bytes: int) -> list[tuple[int, int]]:
    """Split members (by index) into contiguous ``[start, end)`` ranges of about ``range_bytes``."""
    ranges: list[tuple[int, int]] = []
    start, acc = 0, 0
    for m in members:
        if acc and acc + m.size > range_bytes:
            ranges.append((start, m.index))
            start, acc = m.index, 0
        acc += m.size
    if members:
        ranges.append((start, members[-1].index + 1))
    return ranges
