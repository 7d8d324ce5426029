"""Evaluation, in one place and torch-free (it runs beside ONNX Runtime and TensorRT on a device):

    metrics.py    AUROC, F1-max, thresholds, pixel AUROC, AUPRO (numpy only)
    loop.py       the evaluation loop over an Engine on an MVTec-layout test set, its report
    plots.py      ROC, score histogram, heatmap-overlay grid (OpenCV PNGs)
"""
