"""onnxruntime adapter: scores encoded features with the served ONNX model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from model_store.errors import ContractError

INPUT_NAME = "features"
OUTPUT_NAMES = ("margin", "probability_of_default")
# onnxruntime's own exception types (they derive from Exception directly, not from RuntimeError)
_ORT_LOAD_ERRORS: tuple[type[Exception], ...] = (
    ort_errors.Fail,
    ort_errors.InvalidArgument,
    ort_errors.InvalidGraph,
    ort_errors.InvalidProtobuf,
    ort_errors.NoSuchFile,
    ort_errors.NotImplemented,
    ort_errors.RuntimeException,
)


class OnnxModelError(ContractError):
    """onnxruntime cannot load the model file, or its interface is not the standard one."""


class OnnxScorer:
    """One single-threaded onnxruntime session (a gunicorn worker serves one request at a time)."""

    def __init__(self, model_path: str | Path, n_columns: int) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(
                str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except _ORT_LOAD_ERRORS as exc:
            raise OnnxModelError(f"{model_path}: onnxruntime cannot load it: {type(exc).__name__}: {exc}") from exc
        inputs = {i.name: i for i in self._session.get_inputs()}
        outputs = {o.name for o in self._session.get_outputs()}
        if INPUT_NAME not in inputs or not set(OUTPUT_NAMES) <= outputs:
            raise OnnxModelError(
                f"{model_path}: ONNX model must have input '{INPUT_NAME}' and outputs {list(OUTPUT_NAMES)}; "
                f"has {sorted(inputs)} -> {sorted(outputs)}"
            )
        width = inputs[INPUT_NAME].shape[-1]
        if isinstance(width, int) and width != n_columns:
            raise OnnxModelError(f"{model_path}: ONNX input has {width} columns, the feature spec {n_columns}")
        self._outputs = list(OUTPUT_NAMES)

    def score(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(margin, probability_of_default) as float64 arrays [n]."""
        margin, probability = self._session.run(
            self._outputs, {INPUT_NAME: np.ascontiguousarray(features, dtype=np.float32)}
        )
        return _vector(margin), _vector(probability)


def _vector(output: np.ndarray) -> np.ndarray:
    """An output as a float64 array [n] (a model may give [n] or [n, 1])."""
    out = np.asarray(output, dtype=np.float64)
    return out if out.ndim == 1 else out.reshape(-1)
