"""Period reports on the decision records: volumes, drift, reasons, rules, disparate impact, latency, back-tests.

``core`` computes (pure), ``source`` adapts stored records and model versions, ``render`` writes
HTML, PDF, JSON and CSV, ``cli`` is ``credit-decision report``. ``challenger`` compares the champion's
decisions with a shadow's (a challenger model or a candidate policy) over a period (pure);
``challenger_render`` writes that comparison with the same machinery.
"""

from __future__ import annotations

from service.reports.challenger import ComparisonPair, ComparisonReport, DecisionSide, build_comparison
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
    "ComparisonPair",
    "ComparisonReport",
    "DecisionRow",
    "DecisionSide",
    "Period",
    "PeriodReport",
    "ReasonRef",
    "ReportError",
    "ReportSettings",
    "build_comparison",
    "build_report",
]
