"""The camera loop: sources by URI -> threaded capture -> Engine -> sinks (display, video, events, anomaly frames).

Torch-free: only `edgeano.runtime`, numpy and OpenCV.
"""
