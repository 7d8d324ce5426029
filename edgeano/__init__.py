"""edgeano: visual anomaly detection from a PyTorch model to a camera on an NVIDIA Jetson."""

__version__ = "0.1.0"
