"""Pure, deterministic decision core: no Flask, no onnxruntime, no I/O, no clock."""
