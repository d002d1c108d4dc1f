"""The one settings object: every ``LAKE_*`` environment variable, read in one place."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from lakehouse.paths import default_contracts_dir, default_home

STACK_FILE = "stack.json"


class Settings(BaseSettings):
    """Lake configuration.

    Precedence: explicit keyword arguments, then ``LAKE_*`` environment variables, then the
    running local stack (``$LAKE_HOME/stack.json``, written by ``lake up``), then the defaults.
    """

    model_config = SettingsConfigDict(env_prefix="LAKE_", extra="ignore")

    home: Path = Field(
        default_factory=default_home,
        description="Folder of the local stack (state, catalog, logs); default: the checkout's .lake.",
    )
    contracts_dir: Path = Field(
        default_factory=default_contracts_dir,
        description="Folder of dataset contracts (`<name>.yaml`); default: the checkout's.",
    )
    namespace: str = Field("lake", description="Iceberg namespace of the dataset tables.")
    landing_bucket: str = Field("lake-landing", description="Bucket that receives uploads.")
    warehouse_bucket: str = Field(
        "lake-warehouse", description="Bucket that holds Iceberg tables and Lance data."
    )
    s3_endpoint: str | None = Field(
        None, description="S3 endpoint URL; unset means AWS (or the local stack)."
    )
    region: str = Field("us-east-1", description="AWS region.")
    access_key_id: str | None = Field(None, description="S3 access key; unset means the default AWS chain.")
    secret_access_key: str | None = Field(
        None, description="S3 secret key; unset means the default AWS chain."
    )
    catalog_type: Literal["sql", "glue", "rest"] = Field(
        "sql", description="Iceberg catalog: sql, glue or rest."
    )
    catalog_uri: str | None = Field(
        None, description="SQL catalog URI (default: SQLite under LAKE_HOME) or REST catalog URL."
    )
    catalog_properties: dict[str, str] = Field(
        default_factory=dict, description="Extra pyiceberg catalog properties, as a JSON object."
    )
    batch_rows: int = Field(131_072, ge=1, description="Rows per record batch read from an upload.")
    commit_retries: int = Field(
        40, ge=0, description="Outer retries of a conflicting Iceberg commit (jittered, at most 2 s apart)."
    )
    ingest_memory_limit: str = Field(
        "256MB", description="DuckDB memory limit of one ingest (unique values, upsert staging); spills."
    )
    write_workers: int = Field(
        1, ge=1, description="Threads writing an ingest's data files at once (memory grows with each)."
    )
    pii_salt: str | None = Field(None, description="Key of PII hashing (`pii: hash`); required to hash.")
    metrics_namespace: str = Field("Lake", description="CloudWatch namespace of the quality metrics.")
    query_max_rows: int = Field(10_000, ge=1, description="Most rows a query returns.")
    query_memory_limit: str = Field("1GB", description="DuckDB memory limit for one query.")
    duckdb_home: Path | None = Field(None, description="Writable DuckDB home/temp folder (on Lambda: /tmp).")
    log_level: str = Field("INFO", description="Log level of the functions.")
    tracing: bool = Field(False, description="X-Ray tracing of the functions (Powertools Tracer).")
    compaction_target_bytes: int = Field(
        128 * 2**20,
        ge=1,
        description="Target data file size of compaction (lake.compaction.target-file-size-bytes).",
    )
    compaction_min_files: int = Field(
        5, ge=2, description="Compact a partition holding this many small files (lake.compaction.min-files)."
    )
    compaction_small_fraction: float = Field(
        0.75,
        gt=0,
        le=1,
        description="Small file: below this fraction of the target (lake.compaction.small-file-fraction).",
    )
    snapshot_retention_days: float = Field(
        5.0, ge=0, description="Expire snapshots older than this (lake.snapshot-retention-days)."
    )
    min_snapshots: int = Field(
        1, ge=1, description="Newest snapshots of the current history always kept (lake.min-snapshots)."
    )
    orphan_age_days: float = Field(
        3.0, ge=0, description="Orphan cleanup deletes unreferenced files older than this."
    )
    compaction_interval_seconds: float = Field(
        3600.0, ge=0, description="`lake serve`: seconds between compaction runs (0: never)."
    )
    cleanup_interval_seconds: float = Field(
        86400.0,
        ge=0,
        description="`lake serve`: seconds between retention, expiry + GC and orphan runs (0: never).",
    )
    auth: Literal["none", "keys", "iam", "oidc"] = Field(
        "none",
        description="Who authenticates API calls: none (local, in process), keys, iam (AWS), "
        "oidc (ID tokens of LAKE_OIDC_ISSUER).",
    )
    oidc_issuer: str | None = Field(
        None, description="OIDC issuer URL (LAKE_AUTH=oidc); its discovery document names the JWKS."
    )
    oidc_audience: str | None = Field(None, description="The `aud` an ID token must carry (the client id).")
    oidc_scope_claim: str = Field(
        "lake_scope",
        description="Claim holding the Lake scope: read, write or admin (a list or space-separated; "
        "the highest wins; e.g. cognito:groups).",
    )
    oidc_tenant_claim: str | None = Field(
        None, description="Claim binding the caller to a tenant (e.g. custom:tenant); unset: no tenants."
    )
    oidc_algorithms: list[str] = Field(
        default_factory=lambda: ["RS256", "ES256"],
        description="Signature algorithms accepted (asymmetric only; none and HMAC are refused).",
    )
    oidc_jwks_ttl_seconds: float = Field(
        3600.0, gt=0, description="Seconds the issuer's signing keys are cached."
    )
    s3_max_attempts: int = Field(10, ge=1, description="Attempts per object-store request (all clients).")
    s3_connect_timeout: float = Field(5.0, gt=0, description="Seconds to connect to the object store.")
    s3_read_timeout: float = Field(60.0, gt=0, description="Seconds to wait for an object-store answer.")
    query_cache: bool = Field(True, description="Answer repeated queries on unchanged snapshots from cache.")
    query_cache_entries: int = Field(1000, ge=1, description="Result cache entries kept on local disk.")
    dlq_url: str | None = Field(None, description="SQS dead-letter queue of the ingest function (lake dlq).")
    api_key: str | None = Field(None, description="API key the CLI sends with --url requests.")
    query_timeout_seconds: float = Field(30.0, gt=0, description="Time limit of one query.")
    query_max_bytes: int = Field(16 << 20, ge=1024, description="Most bytes of result a query returns.")
    models_dir: Path | None = Field(
        None, description="Folder of distilled embedding models (default: LAKE_HOME/models)."
    )
    takeout_max_ratio: float = Field(
        200.0, gt=1, description="Largest compression ratio of one Takeout archive member (zip bombs)."
    )
    takeout_max_member_bytes: int = Field(
        8 << 30, ge=1, description="Largest uncompressed size of one Takeout archive member."
    )
    takeout_max_total_bytes: int = Field(
        200 << 30, ge=1, description="Largest uncompressed total of one Takeout archive."
    )
    takeout_range_bytes: int = Field(
        4 << 30, ge=1, description="Uncompressed bytes of one member range (one invocation) of an archive."
    )
    takeout_workers: int = Field(4, ge=1, description="Archive members processed in parallel.")
    takeout_queue_url: str | None = Field(
        None, description="SQS queue of member ranges (fan-out); unset: ranges run in process."
    )
    # Query limits, the warm query path and the file cache (queries that cannot leak).
    query_max_sql_chars: int = Field(100_000, ge=1, description="Longest SQL statement accepted.")
    query_max_nesting: int = Field(
        64, ge=4, description="Deepest bracket nesting of a statement or a result value (JSON bodies too)."
    )
    query_cache_bytes: int = Field(
        512 << 20,
        ge=0,
        description="Bytes of immutable data files kept under LAKE_HOME/file-cache (LRU; 0: off).",
    )
    auth_cache_seconds: float = Field(
        10.0,
        ge=0,
        description="API keys are re-read at least this often: a revoked key works at most this long.",
    )
    audit_flush_seconds: float = Field(
        1.0, ge=0, description="Audit rows are written to the spool at most this long after a request."
    )
    max_request_bytes: int = Field(
        8 << 20,
        ge=1024,
        description="Largest request body accepted (above every route's own limit).",
    )
    max_concurrent_requests: int = Field(
        16, ge=1, description="`lake serve`: requests answered at once; more get 503 with Retry-After."
    )
    request_read_timeout: float = Field(
        30.0, gt=0, description="`lake serve`: seconds to wait for a request's bytes."
    )

    # --- staged commits and the ledger (issue 14: writers stage, one committer per table) ---
    commit_mode: Literal["inline", "staged", "queue"] = Field(
        "inline",
        description=(
            "What an ingest does after staging its commit request: inline (run the table's committer "
            "now and wait), staged (leave it to a running committer: `lake serve`), queue (send it to "
            "LAKE_COMMIT_QUEUE_URL, the committer function's FIFO queue)."
        ),
    )
    commit_queue_url: str | None = Field(
        None, description="SQS FIFO queue of the committer function (one message group per table)."
    )
    commit_interval_seconds: float = Field(
        2.0, gt=0, description="A committer commits a table's pending requests at least this often."
    )
    commit_max_files: int = Field(
        200,
        ge=1,
        description="A committer commits as soon as this many requests wait (and at most these per batch).",
    )
    commit_keep_snapshots: int = Field(
        50, ge=1, description="Committer snapshots kept per table; older ones are expired after each batch."
    )
    commit_coalesce_bytes: int = Field(
        8 << 20,
        ge=0,
        description="Data files of one partition in a batch below this size are rewritten as one (0: never).",
    )
    ledger_days: float = Field(
        30.0,
        gt=0,
        description="Days the ledger remembers a loaded object version and content (exactly-once window).",
    )
    serve_workers: int = Field(
        4, ge=1, description="`lake serve`: writer processes ingesting new uploads at once."
    )
    ingest_api_max_bytes: int = Field(6 << 20, ge=1, description="Largest body of POST /ingest/{dataset}.")
    ingest_api_rate: float = Field(
        10.0, gt=0, description="POST /ingest requests per second one API key may make (burst: 2x)."
    )

    # --- scale: backfills, `lake sql --engine daft` and vector jobs on Daft (issue 17) ---
    scale_workers: int = Field(
        2, ge=1, description="Objects a backfill (or rows a vector job) processes at once per runner."
    )
    ray_cpus: int = Field(
        2, ge=1, description="CPUs of the local Ray that `--runner ray` without an address starts."
    )

    @property
    def catalog_name(self) -> str:
        return "lake"

    @property
    def warehouse(self) -> str:
        return f"s3://{self.warehouse_bucket}/"

    def s3_client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``boto3.client("s3", ...)``."""
        kwargs: dict[str, Any] = {"region_name": self.region}
        if self.s3_endpoint:
            kwargs["endpoint_url"] = self.s3_endpoint
        if self.access_key_id and self.secret_access_key:
            kwargs["aws_access_key_id"] = self.access_key_id
            kwargs["aws_secret_access_key"] = self.secret_access_key
        return kwargs

    def pyiceberg_io_properties(self) -> dict[str, str]:
        """FileIO properties pyiceberg uses to reach the object store."""
        props = {
            "s3.region": self.region,
            "s3.connect-timeout": str(self.s3_connect_timeout),
            "s3.request-timeout": str(self.s3_read_timeout),
            "s3.retry-strategy-impl": "lakehouse.storage.LakeS3RetryStrategy",
        }
        if self.s3_endpoint:
            props["s3.endpoint"] = self.s3_endpoint
        if self.access_key_id and self.secret_access_key:
            props["s3.access-key-id"] = self.access_key_id
            props["s3.secret-access-key"] = self.secret_access_key
        return props


def _stack_overrides(home: Path) -> dict[str, Any]:
    path = home / STACK_FILE
    if not path.exists():
        return {}
    state = json.loads(path.read_text())
    return {
        "s3_endpoint": state["endpoint"],
        "access_key_id": state["access_key_id"],
        "secret_access_key": state["secret_access_key"],
        "region": state["region"],
        "landing_bucket": state["landing_bucket"],
        "warehouse_bucket": state["warehouse_bucket"],
        "catalog_type": "sql",
        "catalog_uri": state["catalog_uri"],
        "dlq_url": state.get("dlq_url"),
    }


def load_settings(**explicit: Any) -> Settings:
    """Build settings with the documented precedence (explicit > env > local stack > defaults)."""
    from_env = Settings(**explicit)
    if from_env.s3_endpoint or from_env.catalog_type != "sql" or from_env.catalog_uri:
        return from_env
    overrides = _stack_overrides(from_env.home)
    if not overrides:
        return from_env
    # Keep whatever the environment or the caller set explicitly.
    chosen = from_env.model_fields_set
    merged = {k: v for k, v in overrides.items() if k not in chosen}
    return from_env.model_copy(update=merged)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings for the process (cached; functions call this once per cold start)."""
    return load_settings()
