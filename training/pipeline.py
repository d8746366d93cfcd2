"""Offline training: fit both model families, validate them, prove their explanations exact, write two versions.

``train()`` writes ``<name>-gbt`` (the champion family) and ``<name>-scorecard`` (the WOE baseline)
into a ``ModelStore``. Nothing is written unless both families pass the export proof on every
hold-out row (see ``training.export.prove_exact``).
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from model_store import store as files
from model_store.explainer import TreeEnsemble
from model_store.policy import Policy
from model_store.spec import FeatureSpec
from model_store.store import ModelStore, VersionExistsError
from training import metrics
from training.checks import DataChecks, DataError, check_training_data
from training.config import TrainingConfig
from training.export import (
    INPUT_NAME,
    MARGIN,
    PROBABILITY,
    Proof,
    champion_onnx,
    ensemble_onnx,
    onnx_opsets,
    prove_exact,
)
from training.scorecard import WoeScorecard

SCHEMA_VERSION = 1
REFERENCE_ROWS = 32
FAMILIES = ("gbt", "scorecard")
_LIBRARIES = ("numpy", "scikit-learn", "onnx", "onnxruntime", "skl2onnx", "shap", "optbinning", "highspy")


@dataclass(frozen=True)
class Dataset:
    """The training data, translated to API applications and encoded."""

    path: Path
    sha256: str
    applications: tuple[dict[str, Any], ...]
    X: np.ndarray  # float32 [n, n_columns]
    y: np.ndarray  # int64, 1 = bad
    checks: DataChecks  # what the training-data checks found (dropped rows, leakage warnings)

    @property
    def bad_rate(self) -> float:
        """Share of bad outcomes."""
        return float(self.y.mean())


@dataclass(frozen=True)
class TrainedVersion:
    """One model version written by ``train``."""

    name: str
    version: str
    family: str
    path: Path
    holdout: dict[str, float]
    parity: dict[str, Any]


@dataclass(frozen=True)
class TrainResult:
    """What ``train`` wrote."""

    champion: TrainedVersion
    baseline: TrainedVersion
    promoted: bool
    seconds: float
    warnings: tuple[str, ...] = ()  # the training-data checks' warnings (dropped rows, leakage)

    @property
    def versions(self) -> tuple[TrainedVersion, TrainedVersion]:
        """Both versions, champion family first."""
        return (self.champion, self.baseline)


@dataclass
class _Family:
    family: str
    model: Any
    ensemble: TreeEnsemble
    onnx: bytes
    proof: Proof
    cv_folds: list[dict[str, float]]
    params: dict[str, Any]
    extra: dict[str, Any]


def load_dataset(config: TrainingConfig, spec: FeatureSpec) -> Dataset:
    """Read and check the CSV (see ``training.checks``), translate each row to an API application and encode it."""
    raw = config.data_csv.read_bytes()
    checked = check_training_data(
        config.data_csv,
        raw,
        spec,
        on_invalid=config.on_invalid,
        holdout_fraction=config.holdout_fraction,
        cv_folds=config.cv_folds,
    )
    return Dataset(
        config.data_csv,
        hashlib.sha256(raw).hexdigest(),
        checked.applications,
        spec.encode(checked.applications),
        checked.y,
        checked.checks,
    )


def fit_gbt(spec: FeatureSpec, params: Mapping[str, Any], random_state: int, X: np.ndarray, y: np.ndarray) -> Any:
    """Fit the monotone-constrained HistGradientBoostingClassifier (no early stopping: deterministic)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    model = HistGradientBoostingClassifier(
        **params,
        monotonic_cst=list(spec.column_monotone),
        early_stopping=False,
        random_state=random_state,
    )
    # One OpenMP thread: on 1,000 rows threads only add overhead, and after optbinning's solvers have run
    # the OpenMP workers contend badly (a 0.1 s fit took 2 s on 2 cores). The result does not depend on it.
    with threadpool_limits(limits=1, user_api="openmp"):
        return model.fit(X, y)


def fit_scorecard(spec: FeatureSpec, params: Mapping[str, Any], X: np.ndarray, y: np.ndarray) -> WoeScorecard:
    """Fit the WOE logistic-regression scorecard."""
    return WoeScorecard(spec, **params).fit(X, y)


def train(
    config_path_or_config: str | Path | TrainingConfig,
    store: ModelStore,
    *,
    overrides: Mapping[str, Any] | None = None,
    version: str | None = None,
    progress: bool = True,
    promote_if_no_champion: bool = True,
    strict: bool = False,
) -> TrainResult:
    """Train, validate, prove and write ``<name>-gbt`` and ``<name>-scorecard``; promote gbt if no champion.

    ``strict`` refuses (DataError) data that a check warns of target leakage, before anything is fitted.
    """
    import shap
    from sklearn.model_selection import StratifiedKFold, train_test_split
    from tqdm import tqdm

    started = time.perf_counter()
    config = (
        config_path_or_config
        if isinstance(config_path_or_config, TrainingConfig)
        else TrainingConfig.load(config_path_or_config, overrides)
    )
    if isinstance(config_path_or_config, TrainingConfig) and overrides:
        raise ValueError("pass overrides with a config path, not with a loaded TrainingConfig")
    names = {family: f"{config.name}-{family}" for family in FAMILIES}
    versions = {family: version or store.next_version(names[family]) for family in FAMILIES}
    for family in FAMILIES:
        if versions[family] in store.versions(names[family]):
            raise VersionExistsError(
                f"model version {names[family]} {versions[family]} already exists; versions are immutable"
            )

    steps = ["contract", "data", "cross-validation", "gbt", "scorecard", "proof", "evidence", "model card", "write"]
    bar = tqdm(total=len(steps), desc="train", unit="step", file=sys.stderr, disable=not progress, leave=False)

    def step(label: str) -> None:
        bar.set_postfix_str(label)

    try:
        step("contract")
        spec, policy, catalog = config.load_contract()
        bar.update()

        step("data")
        data = load_dataset(config, spec)
        if strict and data.checks.leaks:
            raise DataError(
                f"{config.data_csv}: refused (strict): " + "; ".join(leak.describe() for leak in data.checks.leaks)
            )
        indices = np.arange(len(data.y))
        train_idx, hold_idx = train_test_split(
            indices, test_size=config.holdout_fraction, stratify=data.y, random_state=config.random_state
        )
        train_idx, hold_idx = np.sort(train_idx), np.sort(hold_idx)
        X_train, y_train, X_hold, y_hold = data.X[train_idx], data.y[train_idx], data.X[hold_idx], data.y[hold_idx]
        bar.update()

        step("cross-validation")
        gbt_params, sc_params = dict(config.champion.params), dict(config.baseline.params)
        cv: dict[str, list[dict[str, float]]] = {family: [] for family in FAMILIES}
        folds = StratifiedKFold(n_splits=config.cv_folds, shuffle=True, random_state=config.random_state)
        for fit_idx, val_idx in folds.split(X_train, y_train):
            Xf, yf, Xv, yv = X_train[fit_idx], y_train[fit_idx], X_train[val_idx], y_train[val_idx]
            gbt_fold = fit_gbt(spec, gbt_params, config.random_state, Xf, yf)
            cv["gbt"].append(metrics.discrimination(yv, gbt_fold.predict_proba(Xv)[:, 1]))
            sc_fold = fit_scorecard(spec, sc_params, Xf, yf)
            cv["scorecard"].append(metrics.discrimination(yv, sc_fold.predict_proba(Xv)[:, 1]))
        bar.update()

        column_field = spec.column_field_index
        step("gbt")
        from training.trees import ensemble_from_hgb

        gbt = fit_gbt(spec, gbt_params, config.random_state, X_train, y_train)
        gbt_ensemble = ensemble_from_hgb(gbt)
        gbt_onnx = champion_onnx(gbt, len(spec.columns))
        tree_explainer = shap.TreeExplainer(gbt)
        gbt_reference = np.asarray(tree_explainer.shap_values(X_hold), dtype=np.float64)
        gbt_reference_ev = float(np.ravel(tree_explainer.expected_value)[0])
        bar.update()

        step("scorecard")
        scorecard = fit_scorecard(spec, sc_params, X_train, y_train)
        sc_ensemble = scorecard.to_ensemble()
        sc_onnx = ensemble_onnx(sc_ensemble, "WOE logistic-regression scorecard, one tree per field")
        background = shap.maskers.Independent(scorecard.woe_train_, max_samples=len(scorecard.woe_train_))
        linear_explainer = shap.LinearExplainer(scorecard.model_, background)
        sc_reference = np.asarray(linear_explainer.shap_values(scorecard.woe(X_hold)), dtype=np.float64)
        sc_reference_ev = float(np.ravel(linear_explainer.expected_value)[0])
        bar.update()

        step("proof")
        inputs = {
            "gbt": (gbt_onnx, gbt_ensemble, gbt, gbt_reference, gbt_reference_ev),
            "scorecard": (sc_onnx, sc_ensemble, scorecard, sc_reference, sc_reference_ev),
        }
        proofs = {
            family: prove_exact(
                family=family,
                model=graph,
                ensemble=ensemble,
                X=X_hold,
                sklearn_probability=fitted.predict_proba(X_hold)[:, 1],
                reference_attributions=reference,
                reference_expected_value=reference_ev,
                column_field_index=column_field,
            )
            for family, (graph, ensemble, fitted, reference, reference_ev) in inputs.items()
        }
        bar.update()

        fams = {
            "gbt": _Family(
                "gbt",
                gbt,
                gbt_ensemble,
                gbt_onnx,
                proofs["gbt"],
                cv["gbt"],
                {**gbt_params, "early_stopping": False, "monotonic_cst": list(spec.column_monotone)},
                {"n_iter": int(gbt.n_iter_)},
            ),
            "scorecard": _Family(
                "scorecard",
                scorecard,
                sc_ensemble,
                sc_onnx,
                proofs["scorecard"],
                cv["scorecard"],
                sc_params,
                _scorecard_extra(spec, scorecard),
            ),
        }

        step("evidence")
        hold_apps = [data.applications[i] for i in hold_idx]
        train_apps = [data.applications[i] for i in train_idx]
        evidence = {family: _evidence(spec, policy, train_apps, hold_apps, y_hold, fams[family]) for family in FAMILIES}
        for family in FAMILIES:  # the reasons the hold-out set is given: the period report's reason-drift baseline
            proof = fams[family].proof
            evidence[family]["baseline"]["reasons"] = metrics.reason_baseline(
                spec, policy, catalog, hold_apps, proof.margin.astype(np.float64), proof.attributions
            )
        bar.update()

        step("model card")
        from training import card

        created_at = datetime.now(UTC).isoformat(timespec="seconds")
        contract_bytes = {
            files.SPEC_FILE: config.feature_spec.read_bytes(),
            files.POLICY_FILE: config.policy.read_bytes(),
            files.CATALOG_FILE: config.reason_codes.read_bytes(),
        }
        outputs: dict[str, tuple[dict[str, bytes], dict[str, Any]]] = {}
        for family in FAMILIES:
            fam = fams[family]
            ev = evidence[family]
            manifest = {
                "schema_version": SCHEMA_VERSION,
                "name": names[family],
                "version": versions[family],
                "family": family,
                "created_at": created_at,
                "config": {"file": config.path.name, "sha256": hashlib.sha256(config.path.read_bytes()).hexdigest()},
                "dataset": config.dataset.to_manifest(),
                "data": {
                    "path": data.path.name,
                    "sha256": data.sha256,
                    "target": {"source_column": spec.target_column, "bad_value": spec.bad_value},
                    "checks": data.checks.to_manifest(),
                    "rows": len(data.y),
                    "bad_rate": data.bad_rate,
                    "train_rows": len(train_idx),
                    "holdout_rows": len(hold_idx),
                    "holdout_fraction": config.holdout_fraction,
                    "cv_folds": config.cv_folds,
                },
                "spec_version": spec.version,
                "policy_version": policy.version,
                "catalog_version": catalog.version,
                "columns": list(spec.columns),
                "fields": list(spec.field_names),
                "monitoring_only_excluded": [m.name for m in spec.monitoring_only],
                "onnx": {
                    "input": INPUT_NAME,
                    "outputs": [MARGIN, PROBABILITY],
                    "opset": onnx_opsets(fam.onnx),
                    "sha256": hashlib.sha256(fam.onnx).hexdigest(),
                },
                "explainer": {
                    "expected_value": fam.ensemble.expected_value,
                    "n_trees": fam.ensemble.n_trees,
                    "n_nodes": fam.ensemble.n_nodes,
                    "sha256": hashlib.sha256(fam.ensemble.to_bytes()).hexdigest(),
                },
                "params": fam.params,
                "random_state": config.random_state,
                "metrics": {
                    "holdout": ev["holdout"],
                    "cv": metrics.summarize_folds(fam.cv_folds),
                    "cv_folds": fam.cv_folds,
                    "calibration": ev["calibration"],
                    "decisions": _priced(ev["decisions"], config),
                    "comparison": {
                        f: {
                            "holdout_auc": evidence[f]["holdout"]["auc"],
                            "cv_auc_mean": metrics.summarize_folds(fams[f].cv_folds)["auc"]["mean"],
                        }
                        for f in FAMILIES
                    },
                },
                "parity": fam.proof.errors,
                "bands": {"policy": ev["decisions"]["per_band"], "proposed": ev["proposed_bands"]},
                "importance": ev["importance"],
                "libraries": _libraries(),
                family: fam.extra,
            }
            reference = {
                "applications": hold_apps[:REFERENCE_ROWS],
                "margins": [float(m) for m in fam.proof.margin[:REFERENCE_ROWS]],
                "probabilities": [float(p) for p in fam.proof.probability[:REFERENCE_ROWS]],
                "baseline": ev["baseline"],
            }
            payload = {
                files.MODEL_FILE: fam.onnx,
                files.EXPLAINER_FILE: fam.ensemble.to_bytes(),
                **contract_bytes,
                files.REFERENCE_FILE: (json.dumps(reference, indent=2, sort_keys=True) + "\n").encode("utf-8"),
            }
            hashes = {rel: hashlib.sha256(b).hexdigest() for rel, b in payload.items()}
            text, plots = card.render(
                manifest, hashes, ev["plot_data"], {f: evidence[f]["plot_data"] for f in FAMILIES}
            )
            payload[files.CARD_FILE] = text.encode("utf-8")
            payload.update(plots)
            outputs[family] = (payload, manifest)
        bar.update()

        step("write")
        written = {}
        for family in FAMILIES:
            payload, manifest = outputs[family]
            path = store.write_version(names[family], versions[family], payload, manifest)
            written[family] = TrainedVersion(
                names[family], versions[family], family, path, evidence[family]["holdout"], fams[family].proof.errors
            )
        promoted = False
        if promote_if_no_champion and store.champion() is None:
            store.promote(names["gbt"], versions["gbt"], note="first champion: promoted by training (no champion yet)")
            promoted = True
        bar.update()
    finally:
        bar.close()
    return TrainResult(
        written["gbt"], written["scorecard"], promoted, time.perf_counter() - started, data.checks.warnings
    )


def _priced(analysis: Mapping[str, Any], config: TrainingConfig) -> dict[str, Any]:
    """The decision analysis with its cost from the config's cost matrix (``cost`` is None without one)."""
    out = dict(analysis)
    matrix = config.dataset.cost_matrix
    out["cost"] = None if matrix is None else matrix.evaluate(analysis["confusion"])
    return out


def _evidence(
    spec: FeatureSpec,
    policy: Policy,
    train_apps: Sequence[Mapping[str, Any]],
    hold_apps: Sequence[Mapping[str, Any]],
    y_hold: np.ndarray,
    fam: _Family,
) -> dict[str, Any]:
    """Hold-out evidence of one family, computed from the ONNX outputs (what will be served)."""
    probability = fam.proof.probability.astype(np.float64)
    margin = fam.proof.margin.astype(np.float64)
    field_attr = spec.field_sums(fam.proof.attributions)
    analysis = metrics.decision_analysis(policy, hold_apps, y_hold, margin)
    scores = policy.scaling.scores(margin)
    fpr_tpr = _roc(y_hold, probability)
    importance = metrics.field_importance(field_attr, spec.field_names)
    return {
        "holdout": metrics.discrimination(y_hold, probability),
        "calibration": metrics.calibration_table(y_hold, probability),
        "decisions": analysis,
        "proposed_bands": metrics.proposed_band_cutoffs(policy, y_hold, scores),
        "importance": importance,
        "baseline": metrics.training_baseline(spec, train_apps, scores, policy),
        "plot_data": {"y": y_hold, "probability": probability, "roc": fpr_tpr, "importance": importance},
    }


def _roc(y: np.ndarray, probability: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y, probability)
    return fpr, tpr


def _scorecard_extra(spec: FeatureSpec, scorecard: WoeScorecard) -> dict[str, Any]:
    coefficients = scorecard.coefficients
    # WOE is high for low risk, so a sensible scorecard has negative coefficients on the WOE features
    reversed_sign = [f.name for f, c in zip(spec.fields, coefficients, strict=True) if c > 0]
    return {
        "intercept": scorecard.intercept,
        "coefficients": {f.name: float(c) for f, c in zip(spec.fields, coefficients, strict=True)},
        "reversed_sign_fields": reversed_sign,
        "monotone_fields_reversed": [n for n in reversed_sign if spec.field(n).monotone != 0],
        "bins": scorecard.bin_tables(),
    }


def _libraries() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in _LIBRARIES:
        try:
            out["sklearn" if dist == "scikit-learn" else dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out
