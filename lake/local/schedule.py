"""The maintenance schedules of ``template.yaml``, run by ``lake serve`` on one machine.

Two schedules, as on AWS: compaction every ``LAKE_COMPACTION_INTERVAL_SECONDS`` (hourly) and
retention + expiry/GC + orphan cleanup every ``LAKE_CLEANUP_INTERVAL_SECONDS`` (daily). Each
sends the same jobs the EventBridge rule would, to the same ``run_maintenance``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lakehouse.config import Settings
from lakehouse.errors import LakeError
from lakehouse.maintenance import MaintenanceOptions, run_maintenance

log = logging.getLogger("lake.schedule")

COMPACTION_JOBS = ("compact",)
CLEANUP_JOBS = ("retention", "expire", "orphans")


@dataclass
class Schedule:
    """Jobs run every ``interval`` seconds (0: never)."""

    name: str
    jobs: tuple[str, ...]
    interval: float
    next_run: float = 0.0


def schedules(settings: Settings) -> list[Schedule]:
    """The two schedules of ``template.yaml``, with the intervals from the settings."""
    return [
        Schedule("compaction", COMPACTION_JOBS, settings.compaction_interval_seconds),
        Schedule("cleanup", CLEANUP_JOBS, settings.cleanup_interval_seconds),
    ]


class MaintenanceScheduler(threading.Thread):
    """Runs each schedule when it is due; the first run of each is one interval after start."""

    def __init__(
        self,
        settings: Settings,
        tick: float = 1.0,
        run: Callable[[Settings, MaintenanceOptions], dict[str, Any]] = run_maintenance,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name="lake-maintenance", daemon=True)
        self.settings = settings
        self.tick = tick
        self.run_jobs = run
        self.clock = clock
        self.schedules = [s for s in schedules(settings) if s.interval > 0]
        now = clock()
        for schedule in self.schedules:
            schedule.next_run = now + schedule.interval
        self.stop_event = threading.Event()
        self.reports: list[dict[str, Any]] = []

    def run_due(self) -> int:
        """Run every schedule that is due now; returns how many ran."""
        ran = 0
        for schedule in self.schedules:
            if self.clock() < schedule.next_run:
                continue
            schedule.next_run = self.clock() + schedule.interval
            ran += 1
            try:
                report = self.run_jobs(self.settings, MaintenanceOptions(jobs=schedule.jobs))
            except LakeError as e:
                print(json.dumps({"maintenance_failed": schedule.name, **e.to_dict()}), flush=True)
                continue
            self.reports.append(report)
            print(json.dumps({"maintained": schedule.name, "bytes_freed": report["bytes_freed"]}), flush=True)
        return ran

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.run_due()
            except Exception as e:  # noqa: BLE001 - keep the schedule alive; the store may come back
                log.warning("maintenance run failed: %s", e)
            self.stop_event.wait(self.tick)
