"""Quality metrics of an ingest as CloudWatch metrics (Powertools Metrics, embedded metric format).

Per dataset: rows read, accepted and quarantined, the quality score (good / total, percent),
and one ``RuleFailures`` metric per failing rule (dimension ``rule``). The EMF document is
printed to stdout, where Lambda ships it to CloudWatch; set ``POWERTOOLS_METRICS_DISABLED=true``
to silence it (the ``lake`` CLI does, so its stdout stays clean).
"""

from __future__ import annotations

from typing import Any

from lakehouse.config import Settings

SERVICE = "lake-ingest"


def _emf(settings: Settings, dimensions: dict[str, str]) -> Any:
    """An EMF provider with its own metric set (``Metrics`` instances share one per process, so
    the handler's own metrics are neither flushed nor mixed with these)."""
    from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

    provider = AmazonCloudWatchEMFProvider(
        metric_set={},
        dimension_set={},
        metadata_set={},
        namespace=settings.metrics_namespace,
        service=SERVICE,
    )
    for name, value in dimensions.items():
        provider.add_dimension(name=name, value=value)
    return provider


def publish(report: Any, settings: Settings) -> None:
    """Emit the quality metrics of one ingest report (nothing for a duplicate event or another
    kind of report)."""
    from aws_lambda_powertools.metrics import MetricUnit

    from lakehouse.ingest.upload import IngestReport

    if not isinstance(report, IngestReport) or report.duplicate:
        return
    emf = _emf(settings, {"dataset": report.dataset})
    emf.add_metric(name="RowsRead", unit=MetricUnit.Count, value=report.rows_read)
    emf.add_metric(name="RowsAccepted", unit=MetricUnit.Count, value=report.rows_accepted)
    emf.add_metric(name="RowsQuarantined", unit=MetricUnit.Count, value=report.rows_quarantined)
    emf.add_metric(name="QualityScore", unit=MetricUnit.Percent, value=round(report.quality_score * 100, 4))
    emf.add_metric(name="RowsPerSecond", unit=MetricUnit.CountPerSecond, value=report.rows_per_second)
    for kind, n in report.pii_detected.items():
        emf.add_metric(name=f"PiiDetected_{kind}", unit=MetricUnit.Count, value=n)
    emf.flush_metrics()
    for rule, n in report.rule_failures.items():
        per_rule = _emf(settings, {"dataset": report.dataset, "rule": rule})
        per_rule.add_metric(name="RuleFailures", unit=MetricUnit.Count, value=n)
        per_rule.flush_metrics()
