"""Bad input, command by command: one line, a documented exit code, nothing lost (tests/badinput.py)."""

from __future__ import annotations

import pytest
from badinput import Case, run_case

CASES = [
    Case("run-missing-second-source", ["run", "--model", "{onnx}", "--camera", "0", "--source", "clip.mp4"], 3, r"source not found: clip\.mp4"),
    Case("bench-missing-model", ["bench", "--model", "nosuch.onnx"], 1, r"model file not found: nosuch\.onnx"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, gaussian_onnx, tmp_path):
    run_case(case, tmp_path, {"onnx": str(gaussian_onnx)})
