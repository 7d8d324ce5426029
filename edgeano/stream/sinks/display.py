"""A window with the annotated frames (one per source); `q` or Esc stops the run."""

from __future__ import annotations

import os
import sys

import cv2
import numpy as np

from edgeano.stream.sinks.base import Sink


def display_available() -> bool:
    """A window can be shown: OpenCV built with a GUI backend and (on Linux) a display to draw on."""
    gui = ""
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            gui = line.split(":", 1)[1].strip().upper()
    if not gui or gui == "NONE":
        return False
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


class DisplaySink(Sink):
    name = "display"
    needs_overlay = True
    WINDOW = "edgeano"

    def __init__(self):
        self.windows = set()

    def write(self, scored, annotated: np.ndarray) -> bool:
        win = self.WINDOW if scored.source_index == 0 else f"{self.WINDOW} {scored.source}"
        if win not in self.windows:
            cv2.namedWindow(win, cv2.WINDOW_NORMAL)
            self.windows.add(win)
        cv2.imshow(win, annotated)
        key = cv2.waitKey(1) & 0xFF
        return key in (ord("q"), 27)  # q or Esc stops the run

    def close(self) -> None:
        for win in self.windows:
            try:
                cv2.destroyWindow(win)
            except cv2.error:
                pass
