"""Offline training pipeline: fit, validate, export to ONNX and write an immutable model version."""
