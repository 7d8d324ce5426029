"""Evaluation, in one place and torch-free (it runs beside ONNX Runtime and TensorRT on a device):

    metrics.py    AUROC, F1-max, thresholds, pixel AUROC, AUPRO (numpy only)
    loop.py       the evaluation loop over an Engine on an MVTec-layout test set, its report
    plots.py      ROC, score histogram (OpenCV PNGs)
    synthetic.py  the synthetic-defect protocol: detection quality estimated from good images only
"""
