"""Turn fitted scikit-learn tree models into the explainer artifact (``TreeEnsemble``)."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from model_store.explainer import TreeEnsemble


def ensemble_from_hgb(model: HistGradientBoostingClassifier) -> TreeEnsemble:
    """Node arrays of a fitted binary ``HistGradientBoostingClassifier`` (raw log-odds output)."""
    if getattr(model, "n_trees_per_iteration_", 1) != 1:
        raise ValueError("only binary classifiers are supported")
    if getattr(model, "is_categorical_", None) is not None and np.any(model.is_categorical_):
        raise ValueError("native categorical splits are not supported; one-hot encode instead")
    offsets = [0]
    left, right, feature, threshold, value, cover, default_left = [], [], [], [], [], [], []
    for (predictor,) in model._predictors:
        nodes = predictor.nodes
        base = offsets[-1]
        is_leaf = nodes["is_leaf"].astype(bool)
        left.append(np.where(is_leaf, -1, nodes["left"].astype(np.int64) + base))
        right.append(np.where(is_leaf, -1, nodes["right"].astype(np.int64) + base))
        feature.append(np.where(is_leaf, -1, nodes["feature_idx"].astype(np.int64)))
        threshold.append(np.where(is_leaf, np.nan, nodes["num_threshold"].astype(np.float64)))
        value.append(np.where(is_leaf, nodes["value"].astype(np.float64), 0.0))
        cover.append(nodes["count"].astype(np.float64))
        # where the model learned to send a missing value (NaN) at each split
        default_left.append(np.where(is_leaf, False, nodes["missing_go_to_left"].astype(bool)))
        offsets.append(base + len(nodes))
    return TreeEnsemble(
        tree_offsets=np.asarray(offsets, dtype=np.int64),
        children_left=np.concatenate(left),
        children_right=np.concatenate(right),
        feature=np.concatenate(feature),
        threshold=np.concatenate(threshold),
        value=np.concatenate(value),
        cover=np.concatenate(cover),
        default_left=np.concatenate(default_left),
        base_offset=float(np.ravel(model._baseline_prediction)[0]),
        n_features=int(model.n_features_in_),
    )
