"""Served models: a verified model version wired to its ONNX session and exact explainer.

``ServedModel.load`` verifies every artifact hash, builds the onnxruntime session and the
TreeSHAP tables, and ``self_check`` scores and explains the version's reference sample:
the service is ready only when that passes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np

from model_store import stability
from model_store.catalog import ReasonCatalog
from model_store.policy import Policy
from model_store.stability import ReasonStability
from model_store.store import ModelBundle, ModelStore
from model_store.treeshap import TreeShap
from service.adapters.onnx_scorer import OnnxScorer
from service.core.engine import Decision, DecisionBatch, DecisionEngine
from service.core.recorded import ApplicationRequest, ModelProvenance, RecordedDecision, ScoreScale
from service.core.recourse import Recourse, find_recourse

ADDITIVITY_TOLERANCE = 1e-5
REFERENCE_TOLERANCE = 1e-5


class SelfCheckError(RuntimeError):
    """The served model failed its startup self-check; the message says which check."""


@dataclass(frozen=True)
class ModelInfo:
    """The served version: its name and version, and the provenance every decision it makes records."""

    name: str
    version: str
    provenance: ModelProvenance

    @property
    def sha256(self) -> str:
        """sha256 of the ONNX model file."""
        return self.provenance.sha256

    @property
    def manifest_sha256(self) -> str:
        """sha256 of the version's manifest (which lists every other file's hash)."""
        return self.provenance.manifest_sha256

    @property
    def family(self) -> str:
        """Model family (gbt, scorecard)."""
        return self.provenance.family

    @property
    def spec_version(self) -> str:
        """The feature spec version the model was validated with."""
        return self.provenance.spec_version

    @property
    def policy_version(self) -> str:
        """The policy version."""
        return self.provenance.policy_version

    @property
    def catalog_version(self) -> str:
        """The reason catalog version."""
        return self.provenance.catalog_version

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "version": self.version,
            "sha256": self.sha256,
            "manifest_sha256": self.manifest_sha256,
            "family": self.family,
        }


class ServedModel:
    """A model version ready to decide: bundle + ONNX scorer + exact explainer + engine."""

    def __init__(self, bundle: ModelBundle) -> None:
        self.bundle = bundle
        self.policy, self.catalog = bundle.policy, bundle.catalog
        self.scorer = OnnxScorer(bundle.onnx_path, len(bundle.spec.columns))
        self.explainer = TreeShap(bundle.explainer)
        self.engine = DecisionEngine(bundle.spec, self.policy, self.catalog, self.scorer, self.explainer)
        scaling = self.policy.scaling
        self.score_scale = ScoreScale(scaling.min_score, scaling.max_score, scaling.factor)
        provenance = ModelProvenance(
            sha256=bundle.onnx_sha256,
            manifest_sha256=bundle.manifest_sha256,
            family=str(bundle.manifest.get("family", "")),
            spec_version=bundle.spec.version,
            policy_version=self.policy.version,
            catalog_version=self.catalog.version,
        )
        self.info = ModelInfo(name=bundle.name, version=bundle.version, provenance=provenance)
        self.stability_thresholds = stability.margin_thresholds(bundle.manifest)

    def with_policy(self, policy: Policy, catalog: ReasonCatalog) -> ServedModel:
        """The same model (same ONNX session and explainer tables) deciding with another policy and catalog."""
        other = ServedModel.__new__(ServedModel)
        other.bundle, other.policy, other.catalog = self.bundle, policy, catalog
        other.scorer, other.explainer = self.scorer, self.explainer
        other.stability_thresholds = self.stability_thresholds
        other.engine = DecisionEngine(self.bundle.spec, policy, catalog, self.scorer, self.explainer)
        scaling = policy.scaling
        other.score_scale = ScoreScale(scaling.min_score, scaling.max_score, scaling.factor)
        provenance = replace(self.info.provenance, policy_version=policy.version, catalog_version=catalog.version)
        other.info = ModelInfo(name=self.info.name, version=self.info.version, provenance=provenance)
        return other

    def recorded(
        self,
        *,
        decision_id: str,
        created_at: datetime,
        request: ApplicationRequest,
        decision: Decision,
        decided_by: Mapping[str, str],
        latency_ms: float | None,
        recourse: Recourse | None = None,
        reason_stability: ReasonStability | None = None,
    ) -> RecordedDecision:
        """A decision this version made, as it is recorded (its name, version, provenance and score scale)."""
        return RecordedDecision.new(
            decision_id=decision_id,
            created_at=created_at,
            request=request,
            decision=decision,
            model_name=self.info.name,
            model_version=self.info.version,
            provenance=self.info.provenance,
            score_scale=self.score_scale,
            decided_by=decided_by,
            latency_ms=latency_ms,
            recourse=recourse,
            reason_stability=reason_stability,
            reason_texts=self.engine.reason_texts,
        )

    def reason_stability(self, batch: DecisionBatch, row: int) -> ReasonStability | None:
        """Whether row ``row``'s top reason and reason set clear the version's margins (None: not measured)."""
        if self.stability_thresholds is None:
            return None
        n_rules = len(self.engine.rule_codes)
        given = sum(1 for index in batch.outcome(row).reasons if index >= n_rules)
        return stability.reason_stability(batch.group_attributions[row].tolist(), given, self.stability_thresholds)

    def recourse(self, application: Mapping[str, Any]) -> Recourse:
        """What would change this version's refer or decline of a validated application (service.core.recourse)."""
        return find_recourse(self.engine, application)

    @classmethod
    def load(cls, store: ModelStore, name: str, version: str) -> ServedModel:
        """Verify and load one version from the store."""
        return cls(store.load_bundle(name, version))

    def self_check(self) -> None:
        """Score and explain the reference sample; raise SelfCheckError on any mismatch."""
        reference = self.bundle.reference
        applications = reference.get("applications") or []
        if not applications:
            raise SelfCheckError("reference sample is empty")
        features = self.bundle.spec.encode(applications)
        margin, probability = self.scorer.score(features)
        expected = np.asarray(reference.get("margins", []), dtype=np.float64)
        if expected.shape != margin.shape:
            raise SelfCheckError("reference margins do not match the reference sample")
        worst = float(np.max(np.abs(margin - expected)))
        if worst > REFERENCE_TOLERANCE:
            raise SelfCheckError(f"ONNX margins differ from the recorded reference by {worst:.3g}")
        phi = self.explainer.shap_values(features)
        gap = float(np.max(np.abs(phi.sum(axis=1) + self.explainer.expected_value - margin)))
        if gap > ADDITIVITY_TOLERANCE:
            raise SelfCheckError(f"attributions + base value differ from the ONNX margin by {gap:.3g}")
        sig = 1.0 / (1.0 + np.exp(-margin))
        if float(np.max(np.abs(sig - probability))) > 1e-6:
            raise SelfCheckError("ONNX probability_of_default is not sigmoid(margin)")
        self.engine.decide(applications).all()
