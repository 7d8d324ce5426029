"""torch -> ONNX (+ metadata), FP16 conversion, parity checks against the torch model."""
