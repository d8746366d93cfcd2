"""Exact path-dependent TreeSHAP (model_store.treeshap) against shap.TreeExplainer and brute force."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pytest
import shap
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.ensemble import HistGradientBoostingClassifier

from model_store.explainer import TreeEnsemble
from model_store.treeshap import TreeShap
from training.trees import ensemble_from_hgb

N_FEATURES = 6


@dataclass(frozen=True)
class Fitted:
    """A really trained model, its explainer artifact and shap's explainer of it."""

    model: HistGradientBoostingClassifier
    ensemble: TreeEnsemble
    reference: shap.TreeExplainer
    explainer: TreeShap


def _training_data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Mixed integer-valued and continuous features with interactions, as float32 values."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(600, N_FEATURES))
    X[:, 0] = rng.integers(0, 6, size=600)
    X[:, 3] = rng.integers(-2, 3, size=600)
    logit = X[:, 0] - 2.0 * X[:, 1] ** 2 + X[:, 2] * X[:, 3] + np.sin(3.0 * X[:, 4])
    y = (logit + rng.logistic(size=600) > 0).astype(int)
    return X.astype(np.float32).astype(np.float64), y


MODEL_PARAMS: dict[str, dict[str, object]] = {
    "stumps": {"max_depth": 1, "max_iter": 15},
    "depth3": {"max_depth": 3, "max_iter": 25},
    "leafwise": {"max_depth": None, "max_leaf_nodes": 12, "max_iter": 10},
    "monotone": {"max_depth": 4, "max_iter": 15, "monotonic_cst": [1, -1, 0, 0, 0, 1]},
    "deep": {"max_depth": 7, "max_leaf_nodes": 40, "max_iter": 8, "min_samples_leaf": 3},
}


@pytest.fixture(scope="module", params=sorted(MODEL_PARAMS))
def fitted(request: pytest.FixtureRequest) -> Fitted:
    X, y = _training_data(seed=7)
    params = MODEL_PARAMS[request.param]
    model = HistGradientBoostingClassifier(learning_rate=0.3, early_stopping=False, random_state=0, **params)  # type: ignore[arg-type]
    model.fit(X, y)
    ensemble = ensemble_from_hgb(model)
    return Fitted(model, ensemble, shap.TreeExplainer(model), TreeShap(ensemble))


def _test_rows(n: int, seed: int) -> np.ndarray:
    """Random float32-valued rows, many of them outside the training range."""
    rng = np.random.default_rng(seed)
    X = rng.normal(scale=2.5, size=(n, N_FEATURES))
    X[:, 0] = rng.integers(-3, 10, size=n)
    X[:, 3] = rng.integers(-4, 5, size=n)
    return X.astype(np.float32).astype(np.float64)


def _has_repeated_feature_on_a_path(ensemble: TreeEnsemble) -> bool:
    """True if some root-to-leaf path tests one feature twice."""
    for t in range(ensemble.n_trees):
        stack: list[tuple[int, tuple[int, ...]]] = [(int(ensemble.tree_offsets[t]), ())]
        while stack:
            node, seen = stack.pop()
            f = int(ensemble.feature[node])
            if f < 0:
                continue
            if f in seen:
                return True
            stack += [(int(ensemble.children_left[node]), (*seen, f)), (int(ensemble.children_right[node]), (*seen, f))]
    return False


def test_models_cover_repeated_features_on_a_path() -> None:
    X, y = _training_data(seed=7)
    model = HistGradientBoostingClassifier(early_stopping=False, random_state=0, **MODEL_PARAMS["deep"])  # type: ignore[arg-type]
    assert _has_repeated_feature_on_a_path(ensemble_from_hgb(model.fit(X, y)))


def test_matches_shap_tree_explainer(fitted: Fitted) -> None:
    X = _test_rows(300, seed=1)
    explainer = fitted.explainer
    phi = explainer.shap_values(X)
    assert phi.dtype == np.float64 and phi.shape == X.shape
    np.testing.assert_allclose(phi, fitted.reference.shap_values(X), rtol=0, atol=1e-6)
    assert explainer.expected_value == pytest.approx(float(np.ravel(fitted.reference.expected_value)[0]), abs=1e-12)


def test_additivity_and_margin(fitted: Fitted) -> None:
    X = _test_rows(300, seed=2)
    explainer = fitted.explainer
    decision = fitted.model.decision_function(X)
    np.testing.assert_allclose(
        explainer.shap_values(X).sum(axis=1) + explainer.expected_value, decision, rtol=0, atol=1e-9
    )
    np.testing.assert_allclose(explainer.margin(X), decision, rtol=0, atol=1e-9)
    np.testing.assert_allclose(explainer.margin(X.astype(np.float32)), decision, rtol=0, atol=1e-9)


def test_single_rows_equal_batch(fitted: Fitted) -> None:
    X = _test_rows(20, seed=3)
    explainer = fitted.explainer
    batch = explainer.shap_values(X)
    single = np.vstack([explainer.shap_values(X[i : i + 1]) for i in range(X.shape[0])])
    np.testing.assert_allclose(single, batch, rtol=0, atol=1e-12)


@pytest.mark.parametrize("budget_share", [0.0, 0.5])
def test_direct_fallback_when_tables_exceed_the_budget(fitted: Fitted, budget_share: float) -> None:
    X = _test_rows(100, seed=4)
    max_table_bytes = int(budget_share * fitted.explainer.table_bytes)
    explainer = TreeShap(fitted.ensemble, max_table_bytes=max_table_bytes)
    assert explainer.n_direct_paths > 0 and explainer.table_bytes <= max_table_bytes
    np.testing.assert_allclose(explainer.shap_values(X), fitted.reference.shap_values(X), rtol=0, atol=1e-6)
    np.testing.assert_allclose(explainer.margin(X), fitted.model.decision_function(X), rtol=0, atol=1e-9)


def test_deep_model_is_tabulated_in_units_of_several_leaves() -> None:
    X, y = _training_data(seed=7)
    model = HistGradientBoostingClassifier(early_stopping=False, random_state=0, **MODEL_PARAMS["deep"])  # type: ignore[arg-type]
    ensemble = ensemble_from_hgb(model.fit(X, y))
    explainer = TreeShap(ensemble)
    n_leaves = int((ensemble.feature < 0).sum())
    assert explainer.n_direct_paths == 0 and explainer.n_wide_tables == 0
    assert explainer.n_leaves_tabulated == n_leaves  # every tree of this model has splits
    assert n_leaves > explainer.n_tables > ensemble.n_trees  # deeper than one unit per tree, several leaves per unit


def _float32_ambiguous(ensemble: TreeEnsemble, row: np.ndarray) -> bool:
    """True if a value equals a float32-rounded threshold that float64 comparison would see differently."""
    internal = ensemble.feature >= 0
    thr = ensemble.threshold[internal]
    rounded = thr.astype(np.float32).astype(np.float64)
    x = row.astype(np.float32).astype(np.float64)[ensemble.feature[internal]]
    return bool(np.any((x == rounded) & (rounded != thr)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(row=arrays(np.float32, N_FEATURES, elements=st.floats(-1e4, 1e4, width=32)))
def test_property_exact_and_additive_on_any_finite_row(fitted: Fitted, row: np.ndarray) -> None:
    assume(not _float32_ambiguous(fitted.ensemble, row))
    X = row.astype(np.float64)[None, :]
    explainer = fitted.explainer
    phi = explainer.shap_values(X)
    np.testing.assert_allclose(phi, fitted.reference.shap_values(X), rtol=0, atol=1e-6)
    total = phi.sum() + explainer.expected_value
    assert total == pytest.approx(float(fitted.model.decision_function(X)[0]), abs=1e-9)
    assert float(explainer.margin(X)[0]) == pytest.approx(total, abs=1e-9)


@pytest.mark.parametrize("d", range(1, 9))
def test_tables_for_every_pattern_equal_the_per_row_formula(d: int) -> None:
    """The build's subset-sum transform over all patterns of o gives the per-row formula's values."""
    from model_store.treeshap import _path_attributions, _pattern_attributions

    rng = np.random.default_rng(d)
    zero_fraction = rng.uniform(0.001, 1.0, size=(7, d))
    zero_fraction[0] = 1.0  # a split whose child got every training row
    value = rng.normal(size=7)
    patterns = ((np.arange(1 << d)[:, None] >> np.arange(d)[None, :]) & 1).astype(np.float64)
    per_row = _path_attributions(patterns[:, None, :], zero_fraction[None], value[None])
    np.testing.assert_allclose(_pattern_attributions(zero_fraction, value), per_row, rtol=1e-13, atol=1e-15)


# ---- hand-built ensembles against a brute-force Shapley computation ------------------------------


def _hand_built() -> TreeEnsemble:
    """Four features; a single-leaf tree, repeated features, an unreachable leaf, uneven covers."""
    nan = math.nan
    # tree 0: x0 <= 1 ? (x0 <= 0.5 ? 1.0 : (x2 <= 3 ? -0.5 : 0.25)) : (x1 <= 0.1 ? 2.0 : -1.0)
    # tree 1: a single leaf
    # tree 2: x3 <= 0 ? (x3 <= 2 ? 0.7 : -0.9  [unreachable]) : (x0 <= 1 ? 0.3 : (x3 <= 5 ? -0.2 : 0.6))
    nodes = [  # per tree: (feature, threshold, left, right, value, cover) with tree-local indices
        [
            (0, 1.0, 1, 6, 0, 100),
            (0, 0.5, 2, 3, 0, 60),
            (-1, nan, -1, -1, 1.0, 25),
            (2, 3.0, 4, 5, 0, 35),
            (-1, nan, -1, -1, -0.5, 20),
            (-1, nan, -1, -1, 0.25, 15),
            (1, 0.1, 7, 8, 0, 40),
            (-1, nan, -1, -1, 2.0, 10),
            (-1, nan, -1, -1, -1.0, 30),
        ],
        [(-1, nan, -1, -1, 0.125, 100)],
        [
            (3, 0.0, 1, 4, 0, 100),
            (3, 2.0, 2, 3, 0, 45),
            (-1, nan, -1, -1, 0.7, 44),
            (-1, nan, -1, -1, -0.9, 1),
            (0, 1.0, 5, 6, 0, 55),
            (-1, nan, -1, -1, 0.3, 20),
            (3, 5.0, 7, 8, 0, 35),
            (-1, nan, -1, -1, -0.2, 5),
            (-1, nan, -1, -1, 0.6, 30),
        ],
    ]
    offsets = np.cumsum([0] + [len(t) for t in nodes])
    rows = [(t, n) for t, tree in enumerate(nodes) for n in tree]

    def shift(t: int, child: int) -> int:
        return -1 if child < 0 else int(offsets[t]) + child

    return TreeEnsemble(
        tree_offsets=offsets.astype(np.int64),
        children_left=np.array([shift(t, n[2]) for t, n in rows], dtype=np.int64),
        children_right=np.array([shift(t, n[3]) for t, n in rows], dtype=np.int64),
        feature=np.array([n[0] for _, n in rows], dtype=np.int64),
        threshold=np.array([n[1] for _, n in rows], dtype=np.float64),
        value=np.array([n[4] for _, n in rows], dtype=np.float64),
        cover=np.array([n[5] for _, n in rows], dtype=np.float64),
        base_offset=-0.75,
        n_features=4,
    )


def _brute_force_shap(ensemble: TreeEnsemble, x: np.ndarray) -> tuple[np.ndarray, float]:
    """Shapley values of the path-dependent value function, summing over all feature subsets."""
    f, thr = ensemble.feature, ensemble.threshold.astype(np.float32)
    left, right, cover, value = ensemble.children_left, ensemble.children_right, ensemble.cover, ensemble.value
    x32 = x.astype(np.float32)

    def expectation(node: int, known: frozenset[int]) -> float:
        if f[node] < 0:
            return float(value[node])
        if int(f[node]) in known:
            return expectation(int(left[node] if x32[f[node]] <= thr[node] else right[node]), known)
        lw, rw = cover[left[node]] / cover[node], cover[right[node]] / cover[node]
        return float(lw * expectation(int(left[node]), known) + rw * expectation(int(right[node]), known))

    def v(known: frozenset[int]) -> float:
        return ensemble.base_offset + sum(expectation(int(r), known) for r in ensemble.tree_offsets[:-1])

    m = ensemble.n_features
    phi = np.zeros(m)
    for i in range(m):
        others = [j for j in range(m) if j != i]
        for size in range(m):
            weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
            for subset in itertools.combinations(others, size):
                s = frozenset(subset)
                phi[i] += weight * (v(s | {i}) - v(s))
    return phi, v(frozenset())


@pytest.mark.parametrize("max_table_bytes", [150 * 2**20, 0])
def test_hand_built_ensemble_matches_brute_force(max_table_bytes: int) -> None:
    ensemble = _hand_built()
    explainer = TreeShap(ensemble, max_table_bytes=max_table_bytes)
    grid = [-1.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 3.0, 4.0, 6.0]
    rng = np.random.default_rng(5)
    X = rng.choice(grid, size=(40, 4))
    phi = explainer.shap_values(X)
    for row, got in zip(X, phi, strict=True):
        expected, base = _brute_force_shap(ensemble, row)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
        assert explainer.expected_value == pytest.approx(base, abs=1e-12)
    np.testing.assert_allclose(phi.sum(axis=1) + explainer.expected_value, ensemble.margin(X), rtol=0, atol=1e-12)
    np.testing.assert_allclose(explainer.margin(X), ensemble.margin(X), rtol=0, atol=1e-12)


def test_all_single_leaf_ensemble() -> None:
    ensemble = TreeEnsemble(
        tree_offsets=np.array([0, 1, 2], dtype=np.int64),
        children_left=np.array([-1, -1], dtype=np.int64),
        children_right=np.array([-1, -1], dtype=np.int64),
        feature=np.array([-1, -1], dtype=np.int64),
        threshold=np.array([math.nan, math.nan]),
        value=np.array([0.5, -0.25]),
        cover=np.array([10.0, 10.0]),
        base_offset=1.0,
        n_features=3,
    )
    explainer = TreeShap(ensemble)
    X = np.ones((4, 3))
    assert explainer.expected_value == pytest.approx(1.25)
    np.testing.assert_array_equal(explainer.shap_values(X), np.zeros((4, 3)))
    np.testing.assert_allclose(explainer.margin(X), 1.25)


def test_conditions_are_evaluated_in_float32_like_onnx() -> None:
    # 0.1 is not a float32: float32(0.1) > 0.1, so x = float32(0.1) goes left in float32, right in float64.
    ensemble = TreeEnsemble(
        tree_offsets=np.array([0, 3], dtype=np.int64),
        children_left=np.array([1, -1, -1], dtype=np.int64),
        children_right=np.array([2, -1, -1], dtype=np.int64),
        feature=np.array([0, -1, -1], dtype=np.int64),
        threshold=np.array([0.1, math.nan, math.nan]),
        value=np.array([0.0, -1.0, 1.0]),
        cover=np.array([4.0, 1.0, 3.0]),
        base_offset=0.0,
        n_features=1,
    )
    explainer = TreeShap(ensemble)
    X = np.array([[np.float32(0.1)], [0.2], [0.0]])
    assert ensemble.margin(X)[0] == 1.0  # the float64 reference goes right
    np.testing.assert_array_equal(explainer.margin(X), [-1.0, 1.0, -1.0])
    np.testing.assert_allclose(explainer.shap_values(X)[:, 0] + explainer.expected_value, [-1.0, 1.0, -1.0])


def test_nan_goes_right_like_the_reference() -> None:
    ensemble = _hand_built()
    X = np.array([[math.nan, 0.0, math.nan, 1.0], [0.25, math.nan, 4.0, math.nan]])
    explainer = TreeShap(ensemble)
    np.testing.assert_allclose(explainer.margin(X), ensemble.margin(X), rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        explainer.shap_values(X).sum(axis=1) + explainer.expected_value, ensemble.margin(X), atol=1e-12
    )


def test_rejects_rows_of_the_wrong_width() -> None:
    explainer = TreeShap(_hand_built())
    with pytest.raises(ValueError, match="shape"):
        explainer.shap_values(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="shape"):
        explainer.margin(np.zeros(4))


# ---- missing values: NaN goes where each split learned to send it --------------------------------------------------


@pytest.fixture(scope="module", params=["depth3", "deep", "stumps"])
def fitted_with_missing(request: pytest.FixtureRequest) -> Fitted:
    """A model trained on data where several features are often missing (NaN), missing itself informative."""
    X, y = _training_data(seed=11)
    rng = np.random.default_rng(5)
    for j, share in ((0, 0.2), (1, 0.3), (4, 0.15)):
        gone = rng.random(X.shape[0]) < share
        X[gone, j] = np.nan
        y[gone & (rng.random(X.shape[0]) < 0.4)] = 1  # missing raises the risk somewhat
    params = MODEL_PARAMS[request.param]
    model = HistGradientBoostingClassifier(learning_rate=0.3, early_stopping=False, random_state=0, **params)  # type: ignore[arg-type]
    model.fit(X, y)
    ensemble = ensemble_from_hgb(model)
    return Fitted(model, ensemble, shap.TreeExplainer(model), TreeShap(ensemble))


def _rows_with_missing(n: int, seed: int) -> np.ndarray:
    X = _test_rows(n, seed)
    rng = np.random.default_rng(seed + 100)
    X[rng.random(X.shape) < 0.25] = np.nan
    return X


def test_missing_values_follow_the_learned_direction(fitted_with_missing: Fitted) -> None:
    ensemble = fitted_with_missing.ensemble
    assert ensemble.default_left.any() and not ensemble.default_left.all()  # both directions were learned
    X = _rows_with_missing(400, seed=21)
    decision = fitted_with_missing.model.decision_function(X)
    np.testing.assert_allclose(ensemble.margin(X), decision, rtol=0, atol=1e-9)
    explainer = fitted_with_missing.explainer
    np.testing.assert_allclose(explainer.margin(X), decision, rtol=0, atol=1e-9)
    phi = explainer.shap_values(X)
    np.testing.assert_allclose(phi, fitted_with_missing.reference.shap_values(X), rtol=0, atol=1e-6)
    np.testing.assert_allclose(phi.sum(axis=1) + explainer.expected_value, decision, rtol=0, atol=1e-9)


@pytest.mark.parametrize("budget_share", [0.0, 0.3])
def test_missing_values_without_tables_too(fitted_with_missing: Fitted, budget_share: float) -> None:
    """The direct (untabulated) evaluation and the per-path tables treat a missing value alike."""
    X = _rows_with_missing(150, seed=22)
    full = fitted_with_missing.explainer
    small = TreeShap(fitted_with_missing.ensemble, max_table_bytes=int(budget_share * full.table_bytes))
    np.testing.assert_allclose(small.shap_values(X), full.shap_values(X), rtol=0, atol=1e-12)
    np.testing.assert_allclose(small.margin(X), full.margin(X), rtol=0, atol=1e-12)
    single = np.vstack([full.shap_values(X[i : i + 1]) for i in range(20)])
    np.testing.assert_allclose(single, full.shap_values(X[:20]), rtol=0, atol=1e-12)


def test_an_archive_without_missing_directions_reads_as_all_right() -> None:
    """Artifacts written before default_left existed: a missing value goes right at every split."""
    import io
    import zipfile

    X, y = _training_data(seed=7)
    ensemble = ensemble_from_hgb(HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(X, y))
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(ensemble.to_bytes())) as old, zipfile.ZipFile(buffer, "w") as new:
        for item in old.namelist():
            if item != "default_left.npy":
                new.writestr(item, old.read(item))
    again = TreeEnsemble.from_bytes(buffer.getvalue())
    assert not again.default_left.any()
    x = np.full((1, N_FEATURES), np.nan)
    right = np.full((1, N_FEATURES), np.inf)
    np.testing.assert_allclose(TreeShap(again).shap_values(x), TreeShap(again).shap_values(right), atol=0)


# ---- production-like depth-6 model, deep chains (two-byte and direct units) --------------------------------------------


@pytest.fixture(scope="module")
def production_like() -> Fitted:
    """A boosted model of depth-6 trees (up to 64 leaves, like the production-size one), trained with missing values."""
    rng = np.random.default_rng(31)
    n, p = 2000, 24
    X = rng.normal(size=(n, p))
    X[:, ::3] = rng.integers(0, 12, size=(n, (p + 2) // 3))
    logit = X @ (rng.normal(size=p) / np.sqrt(p)) + 0.5 * np.sin(X[:, 1] * X[:, 3]) + 0.3 * X[:, 2] * X[:, 4]
    y = (logit + rng.logistic(size=n) > 0).astype(int)
    for j in (0, 2, 5, 7):
        X[rng.random(n) < 0.2, j] = np.nan
    X = X.astype(np.float32).astype(np.float64)
    model = HistGradientBoostingClassifier(
        max_iter=30,
        max_depth=6,
        max_leaf_nodes=64,
        min_samples_leaf=5,
        learning_rate=0.1,
        early_stopping=False,
        random_state=0,
    ).fit(X, y)
    ensemble = ensemble_from_hgb(model)
    return Fitted(model, ensemble, shap.TreeExplainer(model), TreeShap(ensemble))


def _production_like_rows(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.normal(scale=1.5, size=(n, 24))
    X[:, ::3] = rng.integers(-1, 14, size=(n, 8))
    X[rng.random(X.shape) < 0.15] = np.nan
    return X.astype(np.float32).astype(np.float64)


def test_production_like_model_matches_shap_for_one_row_and_many(production_like: Fitted) -> None:
    explainer, ensemble = production_like.explainer, production_like.ensemble
    assert int(np.diff(ensemble.tree_offsets).max()) > 64  # trees of depth 6 with more than 32 leaves
    assert explainer.n_direct_paths == 0 and explainer.n_leaves_tabulated > explainer.n_tables
    X = _production_like_rows(300, seed=32)
    reference = production_like.reference.shap_values(X)
    decision = production_like.model.decision_function(X)
    batch = explainer.shap_values(X)
    np.testing.assert_allclose(batch, reference, rtol=0, atol=1e-6)
    np.testing.assert_allclose(batch.sum(axis=1) + explainer.expected_value, decision, rtol=0, atol=1e-9)
    np.testing.assert_allclose(explainer.margin(X), decision, rtol=0, atol=1e-9)
    for i in range(0, 300, 15):  # one row at a time: the per-decision path
        one = explainer.shap_values(X[i : i + 1])
        assert one.shape == (1, 24)
        np.testing.assert_allclose(one[0], reference[i], rtol=0, atol=1e-6)
        np.testing.assert_allclose(one[0], batch[i], rtol=0, atol=1e-12)
        assert float(explainer.margin(X[i : i + 1])[0]) == pytest.approx(float(decision[i]), abs=1e-9)
    # batch sizes around the evaluation chunks give the same values
    for n in (2, 7, 256):
        np.testing.assert_allclose(
            explainer.shap_values(np.vstack([X] * 2)[:n]), np.vstack([batch] * 2)[:n], atol=1e-12
        )


def test_production_like_model_partly_evaluated_directly(production_like: Fitted) -> None:
    """Units beyond the table budget are evaluated without tables, with the same values."""
    full = production_like.explainer
    small = TreeShap(production_like.ensemble, max_table_bytes=full.table_bytes // 3)
    assert small.n_direct_paths > 0 and small.n_tables > 0 and small.table_bytes <= full.table_bytes // 3
    X = _production_like_rows(60, seed=33)
    np.testing.assert_allclose(small.shap_values(X), full.shap_values(X), rtol=0, atol=1e-12)
    np.testing.assert_allclose(small.shap_values(X[:1]), full.shap_values(X[:1]), rtol=0, atol=1e-12)
    np.testing.assert_allclose(small.margin(X), full.margin(X), rtol=0, atol=1e-12)


def _chain(depth: int, seed: int) -> TreeEnsemble:
    """One caterpillar tree of ``depth`` splits over 4 features (a leaf on the left of each), plus a stump."""
    rng = np.random.default_rng(seed)
    feature, threshold, left, right, value, cover, default_left = [], [], [], [], [], [], []
    rows = 10_000.0
    for i in range(depth):  # node 2i splits, node 2i + 1 is its left leaf, node 2i + 2 the next split
        feature += [i % 4, -1]
        threshold += [float(rng.integers(-3, 4)) / 2, math.nan]
        left += [2 * i + 1, -1]
        right += [2 * i + 2, -1]
        leaf_rows = rows * float(rng.uniform(0.1, 0.4))
        cover += [rows, leaf_rows]
        rows -= leaf_rows
        value += [0.0, float(rng.normal())]
        default_left += [bool(rng.integers(0, 2)), False]
    feature += [-1, 1, -1, -1]
    threshold += [math.nan, 0.25, math.nan, math.nan]
    left += [-1, 2 * depth + 2, -1, -1]
    right += [-1, 2 * depth + 3, -1, -1]
    value += [float(rng.normal()), 0.0, 0.5, -0.5]
    cover += [rows, 100.0, 40.0, 60.0]
    default_left += [False, True, False, False]
    return TreeEnsemble(
        tree_offsets=np.array([0, 2 * depth + 1, 2 * depth + 4], dtype=np.int64),
        children_left=np.array(left, dtype=np.int64),
        children_right=np.array(right, dtype=np.int64),
        feature=np.array(feature, dtype=np.int64),
        threshold=np.array(threshold, dtype=np.float64),
        value=np.array(value, dtype=np.float64),
        cover=np.array(cover, dtype=np.float64),
        base_offset=0.1,
        n_features=4,
        default_left=np.array(default_left, dtype=bool),
    )


def test_deep_chain_uses_byte_two_byte_and_direct_units_exactly() -> None:
    """Leaves up to depth 8 share one-byte tables, depth 9-16 get two-byte ones, deeper are evaluated directly."""
    ensemble = _chain(depth=20, seed=41)
    explainer = TreeShap(ensemble)
    assert explainer.n_tables > 0 and explainer.n_wide_tables == 8 and explainer.n_direct_paths == 5
    grid = [-2.0, -1.0, -0.5, 0.0, 0.25, 0.5, 1.0, 1.5, 2.0]
    X = np.random.default_rng(42).choice(grid, size=(30, 4))
    phi = explainer.shap_values(X)
    for row, got in zip(X, phi, strict=True):
        expected, base = _brute_force_shap(ensemble, row)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
        assert explainer.expected_value == pytest.approx(base, abs=1e-12)
    np.testing.assert_allclose(np.vstack([explainer.shap_values(x[None]) for x in X]), phi, rtol=0, atol=1e-12)
    # with missing values: every way of evaluating agrees, and the margin follows default_left like the reference
    X[np.random.default_rng(43).random(X.shape) < 0.3] = np.nan
    untabulated = TreeShap(ensemble, max_table_bytes=0)
    assert untabulated.n_tables == untabulated.n_wide_tables == 0
    np.testing.assert_allclose(explainer.shap_values(X), untabulated.shap_values(X), rtol=0, atol=1e-12)
    np.testing.assert_allclose(explainer.margin(X), ensemble.margin(X), rtol=0, atol=1e-12)
    np.testing.assert_allclose(untabulated.margin(X), ensemble.margin(X), rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        explainer.shap_values(X).sum(axis=1) + explainer.expected_value, ensemble.margin(X), rtol=0, atol=1e-12
    )


# ---- how the tables are built: the same bits however the work is cut up -----------------------------------------------


def _table_arrays(explainer: TreeShap) -> list[np.ndarray]:
    """Every array the evaluation reads, of every table group."""
    names = (
        "slot_column",
        "slot_plain",
        "slot_threshold",
        "base",
        "table",
        "by_feature",
        "feature_start",
        "margin_table",
    )
    return [getattr(group, name) for group in explainer._groups for name in names]


@pytest.mark.parametrize("chunk", [1, 7, 1 << 24])
def test_tables_are_the_same_bits_however_many_leaves_are_tabulated_together(
    production_like: Fitted, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """Recorded attributions are replayed to the bit: the number of leaves tabulated together (kept small so that
    the start-up's peak memory is the tables' own) changes no bit of the tables, from one leaf to all at once."""
    from model_store import treeshap

    ensembles = [production_like.ensemble, _chain(depth=20, seed=41)]
    defaults = [production_like.explainer, TreeShap(ensembles[1])]
    assert defaults[1].n_wide_tables > 0 and defaults[1].n_direct_paths > 0
    monkeypatch.setattr(treeshap, "_TABULATE_CHUNK", chunk)
    for ensemble, default in zip(ensembles, defaults, strict=True):
        again = TreeShap(ensemble)
        assert (again.n_tables, again.n_wide_tables, again.n_leaves_tabulated, again.n_direct_paths) == (
            default.n_tables,
            default.n_wide_tables,
            default.n_leaves_tabulated,
            default.n_direct_paths,
        )
        built, expected = _table_arrays(again), _table_arrays(default)
        assert len(built) == len(expected) > 0
        for got, want in zip(built, expected, strict=True):
            assert got.dtype == want.dtype and np.array_equal(got, want)


LeafPathTuple = tuple[tuple[int, ...], tuple[bool, ...], float]


def _leaf_paths_left_first(ensemble: TreeEnsemble, root: int) -> list[tuple[int, LeafPathTuple]]:
    """(leaf, (nodes, goes right at each, leaf value)) of every root-to-leaf path of one tree, left before right."""
    paths = []
    stack: list[tuple[int, tuple[int, ...], tuple[bool, ...]]] = [(root, (), ())]
    while stack:
        node, nodes, right = stack.pop()
        if ensemble.feature[node] < 0:
            paths.append((node, (nodes, right, float(ensemble.value[node]))))
            continue
        stack.append((int(ensemble.children_right[node]), (*nodes, node), (*right, True)))
        stack.append((int(ensemble.children_left[node]), (*nodes, node), (*right, False)))
    return paths


@pytest.mark.parametrize("model", ["production_like", "chain"])
def test_units_derive_every_leaf_path_once_in_tree_order(production_like: Fitted, model: str) -> None:
    """A unit keeps no leaf paths but derives them when its table is computed: with the paths too deep for any
    table, every root-to-leaf path of every tree once, each unit's in the tree's left-before-right order (the
    order their attributions are summed in), its columns the features they use."""
    from model_store.treeshap import _Nodes, _tree_units

    ensemble = production_like.ensemble if model == "production_like" else _chain(depth=20, seed=41)
    nodes = _Nodes.of(ensemble)
    n_units = 0
    for t in range(ensemble.n_trees):
        root = int(ensemble.tree_offsets[t])
        if ensemble.feature[root] < 0:
            continue
        expected = _leaf_paths_left_first(ensemble, root)
        units, deep = _tree_units(nodes, root)
        n_units += len(units)
        found: list[LeafPathTuple] = []
        for unit in units:
            leaves = [(leaf.nodes, leaf.right, leaf.value) for leaf in unit.leaves(nodes)]
            assert len(leaves) == unit.n_leaves
            # the unit's leaves are those under its top node, in the tree's order; its bits cover their paths' nodes
            assert leaves == [path for leaf, path in expected if unit.top in (*path[0], leaf)]
            assert all(set(path_nodes) <= set(unit.nodes) for path_nodes, _, _ in leaves)
            assert unit.nodes[: unit.above] == leaves[0][0][: unit.above]
            used = {int(ensemble.feature[n]) for leaf in unit.leaves(nodes) for n in leaf.nodes}
            assert unit.outputs == tuple(sorted(used))
            assert used == {f for leaf in unit.leaves(nodes) for f in leaf.features}
            found += leaves
        found += [(leaf.nodes, leaf.right, leaf.value) for leaf in deep]
        assert sorted(found) == sorted(path for _, path in expected)
    assert n_units > ensemble.n_trees  # trees cut into several units
