"""Generate the synthetic consumer-loan applications of ``data/synthetic_lender/`` (no real person).

    python data/synthetic_lender/generate.py [--rows N] [--seed S] [--output PATH]

Every applicant is drawn from simple, documented distributions; the outcome ``default_12m`` is drawn
from a logistic model of the applicant's true values (see README.md beside this file). With the
default rows and seed the output is byte for byte the committed ``applications.csv``.

Only ``Generator.random`` and ``Generator.standard_normal`` are drawn from, each in a fixed order, and
every other distribution is built from them here, so the file does not depend on how a NumPy version
implements its Poisson or Beta samplers.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

DEFAULT_ROWS = 6000
DEFAULT_SEED = 20260417
DEFAULT_OUTPUT = Path(__file__).resolve().with_name("applications.csv")

COLUMNS = (
    "application_id",
    "applicant_age",
    "marital_status",
    "stated_monthly_income",
    "employment_status",
    "months_in_current_job",
    "home_ownership",
    "months_at_current_address",
    "monthly_debt_payments",
    "dti_pct",
    "revolving_util_pct",
    "inquiries_6m",
    "delinquencies_24m",
    "loan_purpose",
    "loan_amount_requested",
    "loan_term_months",
    "guarantor_flag",
    "channel_code",
    "default_12m",
)

# Share of rows whose cell is removed after the outcome is drawn, each column independently.
MISSING_SHARE = {
    "stated_monthly_income": 0.07,
    "employment_status": 0.06,
    "months_in_current_job": 0.08,
    "home_ownership": 0.055,
    "months_at_current_address": 0.055,
    "revolving_util_pct": 0.06,
    "marital_status": 0.04,
}
# How a removed cell is written: the employment system writes "NA", everything else leaves it blank.
MISSING_LABEL = {"employment_status": "NA"}

EMPLOYMENT = ("full-time", "part-time", "self-employed", "not employed")  # "retired" is drawn from age
EMPLOYMENT_SHARE = (0.66, 0.12, 0.12, 0.10)
INCOME_FACTOR = {"full-time": 1.0, "part-time": 0.55, "self-employed": 1.1, "not employed": 0.35, "retired": 0.7}
HOME = ("OWN", "MORTGAGE", "RENT", "OTHER")
HOME_SHARE_BY_AGE = (  # (first age of the bracket, shares of HOME)
    (0, (0.03, 0.17, 0.55, 0.25)),
    (30, (0.08, 0.47, 0.38, 0.07)),
    (55, (0.35, 0.35, 0.25, 0.05)),
)
PURPOSE = ("debt consolidation", "home improvement", "car", "medical", "major purchase", "other")
PURPOSE_SHARE = (0.40, 0.14, 0.16, 0.07, 0.13, 0.10)
PURPOSE_MEDIAN_AMOUNT = (12000, 15000, 18000, 5000, 6000, 4000)
TERMS = (12, 24, 36, 48, 60, 72)
CHANNELS = ("1", "2", "3", "4", "5")  # branch, online, broker, phone, retail partner
CHANNEL_SHARE = (0.25, 0.40, 0.15, 0.10, 0.10)
MARITAL = ("married", "single", "divorced", "widowed")
MARITAL_SHARE = (0.48, 0.33, 0.13, 0.06)

# The outcome model: log-odds of a default within 12 months (see README.md).
INTERCEPT = -2.0
PURPOSE_EFFECT = (0.15, -0.10, -0.20, 0.35, 0.0, 0.25)
HOME_EFFECT = (-0.20, -0.25, 0.15, 0.10)
EMPLOYMENT_EFFECT = {"full-time": 0.0, "part-time": 0.25, "self-employed": 0.30, "not employed": 0.60, "retired": -0.10}
CHANNEL_EFFECT = (-0.10, 0.0, 0.35, 0.10, 0.20)
GUARANTOR_EFFECT = -0.45
INCOME_NOT_STATED_EFFECT = 0.35


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _pick(u: np.ndarray, shares: Sequence[float]) -> np.ndarray:
    """Index of the category each uniform draw falls into (inverse of the cumulative shares)."""
    cumulative = np.cumsum(np.asarray(shares, dtype=np.float64))
    return np.minimum(np.searchsorted(cumulative / cumulative[-1], u, side="right"), len(shares) - 1)


def _poisson(u: np.ndarray, mean: np.ndarray, most: int) -> np.ndarray:
    """Poisson counts by inversion of uniform draws, capped at ``most``."""
    probability = np.exp(-mean)
    cumulative = probability.copy()
    count = np.zeros(u.shape, dtype=np.int64)
    for k in range(1, most + 1):
        count += u > cumulative
        probability = probability * mean / k
        cumulative = cumulative + probability
    return count


def generate(rows: int = DEFAULT_ROWS, seed: int = DEFAULT_SEED) -> list[list[str]]:
    """The data rows (cells as written to the CSV, header not included)."""
    rng = np.random.default_rng(seed)
    n = rows

    def uniform() -> np.ndarray:
        return rng.random(n)

    def normal() -> np.ndarray:
        return rng.standard_normal(n)

    # Unobserved credit behaviour: drives utilisation, inquiries, delinquencies and the outcome.
    behaviour = normal()

    age = (18 + np.floor(67 * _sigmoid(-0.65 + 1.05 * normal()))).astype(np.int64)

    retired = uniform() < np.clip((age - 58) / 12, 0.0, 0.9)
    employment = np.asarray(EMPLOYMENT, dtype=object)[_pick(uniform(), EMPLOYMENT_SHARE)]
    employment[retired] = "retired"
    working = np.isin(employment, ("full-time", "part-time", "self-employed"))
    tenure = np.floor(np.exp(np.log(48.0) + 1.0 * normal()))
    months_in_job = np.where(working, np.minimum(tenure, (age - 16) * 12), 0).astype(np.int64)

    income_factor = np.asarray([INCOME_FACTOR[e] for e in employment])
    career = 0.75 + 0.25 * np.minimum(age - 18, 25) / 25
    income = np.exp(np.log(4300.0) + 0.45 * normal()) * income_factor * career
    income = np.clip(np.round(income / 10) * 10, 400, 50000).astype(np.int64)

    has_debt = uniform() < 0.9
    debt_share = _sigmoid(-1.6 + 0.7 * normal() + 0.3 * behaviour)
    debt = np.where(has_debt, np.round(income * debt_share), 0).astype(np.int64)
    dti = np.round(1000 * debt / income) / 10

    utilisation = np.round(1150 * _sigmoid(-0.5 + 0.9 * normal() + 0.6 * behaviour)) / 10
    inquiries = _poisson(uniform(), np.exp(-0.2 + 0.45 * behaviour), most=30)
    delinquencies = _poisson(uniform(), 0.18 * np.exp(0.8 * behaviour), most=20)
    months_at_address = np.minimum(np.floor(np.exp(np.log(50.0) + 1.0 * normal())), age * 12).astype(np.int64)

    home = np.empty(n, dtype=np.int64)
    u_home = uniform()
    for i, (first_age, shares) in enumerate(HOME_SHARE_BY_AGE):
        last_age = HOME_SHARE_BY_AGE[i + 1][0] if i + 1 < len(HOME_SHARE_BY_AGE) else 200
        bracket = (age >= first_age) & (age < last_age)
        home[bracket] = _pick(u_home[bracket], shares)

    purpose = _pick(uniform(), PURPOSE_SHARE)
    median_amount = np.asarray(PURPOSE_MEDIAN_AMOUNT, dtype=np.float64)[purpose]
    amount = np.clip(np.round(np.exp(np.log(median_amount) + 0.6 * normal()) / 100) * 100, 500, 75000)
    amount = amount.astype(np.int64)
    term_index = np.clip(np.round(np.log(amount / 2000) / np.log(1.9) + 0.8 * normal()), 0, len(TERMS) - 1)
    term = np.asarray(TERMS, dtype=np.int64)[term_index.astype(np.int64)]

    guarantor = uniform() < np.where(age < 25, 0.20, 0.07)
    channel = _pick(uniform(), CHANNEL_SHARE)

    # Drawn on its own: carries no information about anything else, the outcome included.
    marital = np.asarray(MARITAL, dtype=object)[_pick(uniform(), MARITAL_SHARE)]

    removed = {column: uniform() < share for column, share in MISSING_SHARE.items()}

    log_odds = (
        INTERCEPT
        + 0.030 * (dti - 25)
        + 0.012 * (utilisation - 40)
        + 0.22 * inquiries
        + 0.45 * np.minimum(delinquencies, 6)
        - 0.55 * np.log(income / 4000)
        + INCOME_NOT_STATED_EFFECT * removed["stated_monthly_income"]
        + 0.08 * np.log1p(debt / 500)
        - 0.004 * np.minimum(months_in_job, 240)
        - 0.002 * np.minimum(months_at_address, 240)
        - 0.012 * (age - 40)
        + 0.012 * (term - 36)
        + 0.15 * np.log(amount / 10000)
        + np.asarray(PURPOSE_EFFECT)[purpose]
        + np.asarray(HOME_EFFECT)[home]
        + np.asarray([EMPLOYMENT_EFFECT[e] for e in employment])
        + np.asarray(CHANNEL_EFFECT)[channel]
        + GUARANTOR_EFFECT * guarantor
        + 0.5 * behaviour
    )
    default = uniform() < _sigmoid(log_odds)

    columns: dict[str, list[str]] = {
        "application_id": [f"SL-{i + 1:06d}" for i in range(n)],
        "applicant_age": [str(v) for v in age],
        "marital_status": [str(v) for v in marital],
        "stated_monthly_income": [str(v) for v in income],
        "employment_status": [str(v) for v in employment],
        "months_in_current_job": [str(v) for v in months_in_job],
        "home_ownership": [HOME[k] for k in home],
        "months_at_current_address": [str(v) for v in months_at_address],
        "monthly_debt_payments": [str(v) for v in debt],
        "dti_pct": [f"{v:.1f}" for v in dti],
        "revolving_util_pct": [f"{v:.1f}" for v in utilisation],
        "inquiries_6m": [str(v) for v in inquiries],
        "delinquencies_24m": [str(v) for v in delinquencies],
        "loan_purpose": [PURPOSE[k] for k in purpose],
        "loan_amount_requested": [str(v) for v in amount],
        "loan_term_months": [str(v) for v in term],
        "guarantor_flag": ["yes" if g else "no" for g in guarantor],
        "channel_code": [CHANNELS[k] for k in channel],
        "default_12m": ["1" if d else "0" for d in default],
    }
    for column, mask in removed.items():
        label = MISSING_LABEL.get(column, "")
        cells = columns[column]
        for i in np.flatnonzero(mask):
            cells[i] = label
    return [list(row) for row in zip(*(columns[c] for c in COLUMNS), strict=True)]


def write_csv(path: Path, rows: int = DEFAULT_ROWS, seed: int = DEFAULT_SEED) -> None:
    """Write the header and the generated rows to ``path`` (UTF-8, ``\\n`` line ends)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(generate(rows, seed))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``--rows``, ``--seed``, ``--output``."""
    parser = argparse.ArgumentParser(description="Generate the synthetic consumer-loan applications (no real person).")
    parser.add_argument(
        "--rows", type=int, default=DEFAULT_ROWS, help=f"number of applications (default {DEFAULT_ROWS})"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="CSV file to write (default: applications.csv here)"
    )
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    write_csv(args.output, args.rows, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
