"""Maintenance function, run on a schedule: retention for every dataset with a contract."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from lakehouse.config import get_settings
from lakehouse.logs import function_logger
from lakehouse.maintenance import apply_retention

logger = function_logger("lake-maintenance")


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    results = [r.to_dict() for r in apply_retention(get_settings())]
    logger.info("maintenance done", extra={"retention": results})
    return {"retention": results}
