"""One Powertools logger per function, writing JSON lines to stderr (stdout stays for results)."""

from __future__ import annotations

import logging
import sys

from aws_lambda_powertools import Logger

from lakehouse.config import get_settings


def function_logger(service: str) -> Logger:
    """A structured logger for ``service`` at the configured level."""
    return Logger(
        service=service, level=get_settings().log_level, logger_handler=logging.StreamHandler(sys.stderr)
    )
