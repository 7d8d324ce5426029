"""INT8 calibration: normal images -> QDQ ONNX (TensorRT explicit quantization) + accuracy report."""
