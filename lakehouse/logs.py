"""Observability shared by the functions: a Powertools Logger (JSON lines on stderr, so stdout
stays for results), Metrics (CloudWatch EMF) and Tracer (X-Ray; off outside Lambda)."""

from __future__ import annotations

import logging
import sys

from aws_lambda_powertools import Logger, Metrics, Tracer

from lakehouse.config import get_settings

NAMESPACE = "Lake"


def function_logger(service: str) -> Logger:
    """A structured logger for ``service`` at the configured level."""
    return Logger(
        service=service, level=get_settings().log_level, logger_handler=logging.StreamHandler(sys.stderr)
    )


def function_metrics(service: str) -> Metrics:
    """EMF metrics in the ``Lake`` namespace (``POWERTOOLS_METRICS_DISABLED=true`` turns them off)."""
    return Metrics(namespace=NAMESPACE, service=service)


def function_tracer(service: str) -> Tracer:
    return Tracer(service=service)
