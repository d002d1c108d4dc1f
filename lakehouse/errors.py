"""Lake's errors: each one is terminal (bad input, never retried) or transient (retry it)."""

from __future__ import annotations


class LakeError(Exception):
    """Base of every error Lake raises."""

    terminal: bool = True
    http_status: int = 500

    def to_dict(self) -> dict[str, str | bool]:
        """How reports, logs and queues name a failure: ``error`` (the class), ``message``, ``terminal``."""
        return {"error": type(self).__name__, "message": str(self), "terminal": self.terminal}


class TerminalError(LakeError):
    """Bad input or configuration: retrying cannot help; quarantine or DLQ."""

    terminal = True
    http_status = 400


class TransientError(LakeError):
    """Throttling, conflicts, unreachable services: retrying may succeed."""

    terminal = False
    http_status = 503


class ContractNotFound(TerminalError):
    """No contract file exists for the dataset."""

    http_status = 404


class ContractInvalid(TerminalError):
    """A contract file does not parse or breaks the contract format."""


class BadObjectKey(TerminalError):
    """An uploaded key does not name a dataset (`<dataset>/<file>`)."""


class UnsupportedFormat(TerminalError):
    """The file's format cannot be read."""


class UnreadableFile(TerminalError):
    """The file is corrupt or does not match its format."""


class SchemaMismatch(TerminalError):
    """The file's columns cannot satisfy the contract."""


class TableNotFound(TerminalError):
    """No such table in the catalog."""

    http_status = 404


class SnapshotNotFound(TerminalError):
    """The snapshot or time asked for does not exist in the table."""


class BadRequest(TerminalError):
    """A request to the query API that is malformed."""


class ForbiddenSQL(TerminalError):
    """User SQL that is not a single read-only query over Lake tables."""


class QueryFailed(TerminalError):
    """A read-only query failed (syntax, binding, types)."""


class Unauthorized(TerminalError):
    """No valid API key."""

    http_status = 401


class Forbidden(TerminalError):
    """The key may not do this (scope or tenant)."""

    http_status = 403


class QueryLimitExceeded(TerminalError):
    """A query ran past its time limit."""


class StackNotRunning(TerminalError):
    """The embedded local stack is not running."""


class CommitConflict(TransientError):
    """A concurrent writer won the commit race too many times in a row."""


class StoreUnavailable(TransientError):
    """The object store or catalog did not answer."""


class TemplateInvalid(TerminalError):
    """The SAM template does not parse or a function in it is incomplete."""


class FunctionNotFound(TerminalError):
    """No function with that logical id in the SAM template, or its handler cannot be imported."""

    http_status = 404


# --- Takeout archives (lakehouse.takeout) ---------------------------------------------------


class ArchiveUnreadable(TerminalError):
    """The upload is not a readable .zip or .tgz archive (bad central directory, broken stream)."""


class ArchiveTooLarge(TerminalError):
    """The archive's members add up to more than ``LAKE_TAKEOUT_MAX_TOTAL_BYTES``: nothing is committed."""


class MemberRejected(TerminalError):
    """One archive member cannot be taken in; it is quarantined (``rule`` says why), the rest go on."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


class UnsafeMember(MemberRejected):
    """A member that must not be extracted: path traversal, absolute path, symlink, encrypted, bomb."""


class CorruptMember(MemberRejected):
    """A member whose bytes do not decompress or fail their CRC."""


class UnparseableMember(MemberRejected):
    """A member routed to a product whose content does not have that product's shape."""


class SnapshotExpired(SnapshotNotFound):
    """The snapshot asked for was expired by maintenance; its files may be gone."""


class ChangeFeedUnavailable(TerminalError):
    """A delete or overwrite between the two snapshots makes an append-only change feed impossible."""


# --- data quality (lakehouse.contracts.validate, quarantine, evolution, pii, upsert) ------------------


class FileRejected(TerminalError):
    """More rows failed than the contract's ``max_bad_fraction`` allows (``on_error: reject_file``)."""


class SchemaEvolutionRefused(SchemaMismatch):
    """A column's type change is not a safe widening, or strict evolution met an unknown column."""


class PiiSaltMissing(TerminalError):
    """A contract hashes PII but no ``LAKE_PII_SALT`` is configured."""


# --- vectors (lakehouse.vectors.store, embedders, artifacts) -------------------------------------


class EmbedderUnavailable(TerminalError):
    """The contract's embedder needs the optional ``embed`` extra, which is not installed."""


class VectorsNotConfigured(TerminalError):
    """The dataset's contract has no ``vectors:`` section, or the search mode needs what it lacks."""


class VectorWriteFailed(TransientError):
    """Writing a dataset's Lance vectors failed; the table commit did not happen, retry the event."""


class NotFound(TerminalError):
    """The thing asked for does not exist."""

    http_status = 404


class IdentityProviderUnavailable(TransientError):
    """The OpenID Connect issuer (discovery document or JWKS) did not answer usably."""


# --- staged commits, the ledger, version reads (lakehouse.tables.committer, ledger; storage) ----


class SourceVersionGone(TerminalError):
    """The object version an event names no longer exists (deleted, or overwritten in an
    unversioned bucket): Lake never reads another version under its name."""

    http_status = 410


class RateLimited(TerminalError):
    """Too many requests for one API key; retry after ``retry_after`` seconds."""

    http_status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PayloadTooLarge(TerminalError):
    """A request body is larger than the endpoint takes."""

    http_status = 413


class ScaleUnavailable(TerminalError):
    """A scale command (backfill, ``sql --engine daft``, vector jobs) needs the ``lake[scale]`` extra."""


class BackfillRefused(TerminalError):
    """A backfill cannot run for this dataset or prefix (nothing was written)."""


class RayStartFailed(TransientError):
    """A local Ray did not come up (on a loaded machine its processes can miss Ray's start-up
    deadlines); run the job again, or point ``--ray-address`` at a running cluster."""
