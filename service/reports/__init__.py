"""Period reports on the decision records: volumes, drift, reasons, rules, disparate impact, latency, back-tests.

``core`` computes (pure), ``source`` adapts stored records and model versions, ``render`` writes
HTML, PDF, JSON and CSV, ``cli`` is ``credit-decision report``.
"""

from __future__ import annotations

from service.reports.core import (
    Baseline,
    DecisionRow,
    Period,
    PeriodReport,
    ReasonRef,
    ReportError,
    ReportSettings,
    build_report,
)

__all__ = [
    "Baseline",
    "DecisionRow",
    "Period",
    "PeriodReport",
    "ReasonRef",
    "ReportError",
    "ReportSettings",
    "build_report",
]
