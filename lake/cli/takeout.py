"""What ``lake put`` prints for a Takeout archive: progress per product, then a summary."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from lakehouse.takeout.pipeline import TakeoutReport


class ProductProgress:
    """A progress callback for :func:`lakehouse.takeout.ingest_archive`: a stderr line per member
    parsed or quarantined (blob-only members at most once a second), with the records parsed so
    far per product."""

    def __init__(self, out: TextIO | None = None, every: float = 1.0) -> None:
        self.out = out or sys.stderr
        self.started = time.monotonic()
        self.every = every
        self.last = 0.0
        # Counts restart with each member range (or tar chunk): earlier ranges' are kept here.
        self.base: dict[str, int] = {}
        self.base_members = 0
        self.range_members = 0
        self.range_totals: dict[str, int] = {}

    def __call__(self, event: dict[str, Any]) -> None:
        done = event["members_done"]
        if done == 1 and self.range_members:  # a new range began
            for product, n in self.range_totals.items():
                self.base[product] = self.base.get(product, 0) + n
            self.base_members += self.range_members
            self.range_members = 0
        if done > self.range_members:  # workers may report out of order: keep the furthest
            self.range_members, self.range_totals = done, event["records_by_product"]
        now = time.monotonic()
        if event["status"] == "stored" and now - self.last < self.every:
            return  # blob-only members (photos: thousands of them) show at most once a second
        self.last = now
        totals = dict(self.base)
        for product, n in event["records_by_product"].items():
            totals[product] = totals.get(product, 0) + n
        running = "  ".join(f"{p} {n:,}" for p, n in sorted(totals.items())) or "-"
        what = event["product"] or event["status"]
        if event["status"] == "quarantined":
            what = f"quarantined ({event['rule']})"
        seconds = time.monotonic() - self.started
        self.out.write(
            f"[{self.base_members + event['members_done']:>5} members, {seconds:6.1f}s] {running}  "
            f"<- {what}: {event['member']}\n"
        )
        self.out.flush()


def summary(report: TakeoutReport) -> list[str]:
    """Human lines for a finished archive ingest."""
    if report.queued and report.kind == "tar":
        start = report.next_member or 0
        return [f"{report.source}: queued for the Takeout function (from member {start})"]
    if report.queued:
        return [f"{report.source}: {report.queued} member ranges queued for the Takeout function"]
    from lake.cli.output import plural, rate

    if report.duplicate:
        return [f"{report.source}: already ingested; nothing added"]
    lines = [
        f"{report.source}: {report.members} members ({report.members_parsed} parsed, "
        f"{report.members_stored} kept as blobs only, {report.members_quarantined} quarantined), "
        f"{plural(report.rows, 'row')} in {report.seconds}s{rate(report.rows_per_second)}, "
        f"{plural(len(report.ranges), 'range')}"
    ]
    for table, counts in sorted(report.products.items()):
        lines.append(
            f"  {table:<20} {counts['members']:>5} members  {counts['rows']:>10,} rows  "
            f"{counts['rows_quarantined']:>6,} quarantined"
        )
    for member in report.quarantined_members:
        lines.append(f"  quarantined {member['member']}: {member['reason']}")
    return lines
