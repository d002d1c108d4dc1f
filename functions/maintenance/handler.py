"""Maintenance function, run on schedules: the event says which jobs run.

The hourly schedule sends ``{"jobs": ["compact"]}``, the daily one
``{"jobs": ["retention", "expire", "orphans", "audit"]}``; an event without ``jobs`` (the plain
EventBridge scheduled event) runs them all. ``"dry_run": true`` reports without changing anything.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from functions.observability import function_logger, function_tracer
from lakehouse.access import audit
from lakehouse.config import get_settings
from lakehouse.maintenance import MaintenanceOptions, registered_jobs, run_maintenance

logger = function_logger("lake-maintenance")
tracer = function_tracer("lake-maintenance")
MARGIN_SECONDS = 120.0  # no partition is started this close to the function's timeout


class MaintenanceEvent(BaseModel):
    """The schedule's input (extra EventBridge fields are ignored)."""

    model_config = ConfigDict(extra="ignore")

    jobs: list[str] = Field(default_factory=lambda: list(registered_jobs()))
    dry_run: bool = False


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = MaintenanceEvent.model_validate(event or {})
    remaining = context.get_remaining_time_in_millis() / 1000
    options = MaintenanceOptions(
        jobs=tuple(request.jobs),
        dry_run=request.dry_run,
        deadline=time.monotonic() + max(0.0, remaining - MARGIN_SECONDS),
    )
    settings = get_settings()
    outcome = "error"
    try:
        report = run_maintenance(settings, options)
        outcome = "ok"
    except Exception as e:
        outcome = type(e).__name__
        raise
    finally:
        jobs = ",".join(request.jobs)
        audit.record("schedule", "maintenance", outcome, detail=jobs, request_id=context.aws_request_id)
        audit.flush_quietly(settings, logger)
    logger.info("maintenance done", extra={"jobs": request.jobs, "bytes_freed": report["bytes_freed"]})
    return report
