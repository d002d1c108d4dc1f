"""Observability shared by the functions: a Powertools Logger (JSON lines on stderr, so stdout
stays for results), Metrics (CloudWatch EMF) and, with ``LAKE_TRACING`` on, Tracer (X-Ray)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics

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


F = TypeVar("F", bound=Callable[..., Any])


class Untraced:
    """What a function gets instead of Powertools' Tracer when ``LAKE_TRACING`` is off.

    Building a Tracer imports the X-Ray SDK (a few hundred ms of every cold start) even when
    tracing is disabled, so without tracing no Tracer is built at all.
    """

    def capture_lambda_handler(self, handler: F) -> F:
        return handler

    def capture_method(self, method: F) -> F:
        return method


def function_tracer(service: str) -> Any:
    """Powertools' X-Ray Tracer with ``LAKE_TRACING`` on, else :class:`Untraced`."""
    if not get_settings().tracing:
        return Untraced()
    from aws_lambda_powertools import Tracer

    return Tracer(service=service)
