"""Adapters at the edges: ONNX runtime scoring, model loading."""
