"""Bad input, command by command: one line, a documented exit code, nothing lost (tests/badinput.py).

Issue 9's table: every row is a failure found by trying each command as a careless user or an
attacker would. Exit codes (edgeano.errors): 2 bad flag/file/checkpoint/artifact, 3 source,
4 output not written, 1 runtime failure, 130/143 SIGINT/SIGTERM.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from badinput import EDGEANO, Case, run_case

USAGE, SOURCE, OUTPUT = 2, 3, 4
ONE_FRAME = ["--source", "{data}/test/good", "--max-frames", "1", "--headless"]
TINY_GAN = ["--img-size", "32", "--width", "8", "--nz", "16", "--epochs", "1", "--batch", "4"]
TRAINS = 300  # s: the rows that really train (seconds alone, a minute on a busy 2-core box)


# -- setups: what a case finds in its scratch folder -------------------------------------------------
def tampered_onnx(change, name="bad.onnx"):
    """A copy of the fixture ONNX whose edgeano metadata `change(meta)` edits (or replaces, when it
    returns something; a str is stored as the raw metadata text)."""

    def setup(scratch: Path, fx):
        import onnx

        from edgeano.artifact import METADATA_KEY

        model = onnx.load(fx["onnx"])
        prop = next(p for p in model.metadata_props if p.key == METADATA_KEY)
        meta = json.loads(prop.value)
        new = change(meta)
        prop.value = new if isinstance(new, str) else json.dumps(meta if new is None else new)
        onnx.save(model, str(scratch / name))

    return setup


def meta_set(path: str, value):
    """Set metadata field `path` ("threshold.value", "input.scale") to `value`."""

    def change(meta):
        *parents, last = path.split(".")
        d = meta
        for k in parents:
            d = d[k]
        d[last] = value

    return tampered_onnx(change)


def tampered_checkpoint(change, name="bad.pt"):
    """A copy of the fixture checkpoint (torch.save'd dict) after `change(ckpt)`."""

    def setup(scratch: Path, fx):
        import torch

        ckpt = torch.load(fx["ckpt"], weights_only=True)
        change(ckpt)
        torch.save(ckpt, scratch / name)

    return setup


def _set(d, key, value):
    d[key] = value


def good_onnx_at(name="good.onnx"):
    """A previous good model at `name` (what a failed export must leave alone)."""

    def setup(scratch: Path, fx):
        shutil.copy(fx["onnx"], scratch / name)

    return setup


def both(*setups):
    def setup(scratch, fx):
        for s in setups:
            s(scratch, fx)

    return setup


def a_file(name="afile"):
    def setup(scratch: Path, fx):
        (scratch / name).write_text("not a folder\n")

    return setup


def a_folder(name):
    def setup(scratch: Path, fx):
        (scratch / name).mkdir()

    return setup


def image_folder(n: int, names=None, truncate: int = 0, size: int = 48):
    """scratch/imgs: n PNG crops of the texture (names given or 000.png...), the last `truncate` cut short."""

    def setup(scratch: Path, fx):
        import cv2

        from edgeano.data.synthetic import texture_frames

        d = scratch / "imgs"
        d.mkdir()
        for i, frame in enumerate(texture_frames(n, size, seed=1)):
            name = names[i] if names else f"{i:03d}.png"
            ok, buf = cv2.imencode(".png", frame)
            data = buf.tobytes()
            if i >= n - truncate:
                data = data[: len(data) // 2]
            with open(os.path.join(os.fsencode(d), name if isinstance(name, bytes) else os.fsencode(name)), "wb") as f:
                f.write(data)

    return setup


def data_with_truncated_test_png(scratch: Path, fx):
    """A copy of the fixture data set whose first test/good image is cut in half."""
    shutil.copytree(fx["data"], scratch / "trunc")
    first = sorted((scratch / "trunc" / "test" / "good").iterdir())[0]
    data = first.read_bytes()
    first.write_bytes(data[: len(data) // 2])
    tr = sorted((scratch / "trunc" / "train" / "good").iterdir())[0]
    tr.write_bytes(tr.read_bytes()[:200])


def truncated_video(scratch: Path, fx):
    """An .mp4 cut before its index (moov atom): what a camera PC's full disk or a killed recorder leaves."""
    import cv2

    from edgeano.data.synthetic import texture_frames

    w = cv2.VideoWriter(str(scratch / "full.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 64))
    for f in texture_frames(10, 64):
        w.write(f)
    w.release()
    (scratch / "t.mp4").write_bytes((scratch / "full.mp4").read_bytes()[:1000])


def unreadable_images(scratch: Path, fx):
    d = scratch / "junk"
    d.mkdir()
    for i in range(3):
        (d / f"{i}.png").write_bytes(b"\x89PNG not really" * 3)


def plain_pickle(scratch: Path, fx):
    """A protocol-4 pickle (torch.load warns about it in two lines before refusing it)."""
    import pickle

    with open(scratch / "bad.pt", "wb") as f:
        pickle.dump({"format": "edgeano-checkpoint"}, f, protocol=4)


def failed_gan_run(scratch: Path, fx):
    """What a GANomaly run that failed before its first checkpoint left (train.log, config.json)."""
    d = scratch / "runs" / "ganomaly" / "exp1"
    (d / "weights").mkdir(parents=True)
    (d / "train.log").write_text("2026-01-01 00:00:00 INFO data ...\n")
    (d / "config.json").write_text("{}\n")


def finished_gaussian_run(scratch: Path, fx):
    """A run that saved its checkpoint: its name is taken."""
    d = scratch / "runs" / "gaussian" / "done" / "weights"
    d.mkdir(parents=True)
    (d / "best.pt").write_bytes(b"a finished run's checkpoint")


NON_UTF8 = [b"caf\xe9.png"] + [f"{i:03d}.png".encode() for i in range(1, 5)]
NO_RUN = "runs/*/*"  # no run folder left behind

CASES = [
    # -- exit codes: usage 2, source 3, output 4 -------------------------------------------------------
    Case("run-missing-second-source", ["run", "--model", "{onnx}", "--camera", "0", "--source", "clip.mp4"], SOURCE, r"source not found: clip\.mp4"),
    Case("bench-missing-model", ["bench", "--model", "nosuch.onnx"], USAGE, r"model file not found: nosuch\.onnx"),
    Case("run-source-missing", ["run", "--model", "{onnx}", "--source", "nosuch.mp4", "--headless"], SOURCE, r"source not found: nosuch\.mp4"),
    Case("usage-error-one-line", ["bench", "--model", "{onnx}", "--iters", "abc"], USAGE, r"--iters"),
    Case("unknown-option-one-line", ["eval", "--model", "{onnx}", "--data", "{data}", "--nosuch"], USAGE, r"--nosuch"),
    # -- T4/U7/D2: the metadata document, validated at load (run, bench, eval, calibrate, build) --------
    Case("meta-schema-string", ["run", "--model", "bad.onnx", *ONE_FRAME], USAGE, r"bad\.onnx.*schema", setup=meta_set("schema", "1")),
    Case("meta-null", ["bench", "--model", "bad.onnx"], USAGE, r"bad\.onnx.*metadata", setup=tampered_onnx(lambda m: "null")),
    Case("meta-threshold-number", ["eval", "--model", "bad.onnx", "--data", "{data}"], USAGE, r"bad\.onnx.*threshold",
         setup=meta_set("threshold", 5)),
    Case("meta-threshold-null", ["run", "--model", "bad.onnx", *ONE_FRAME], USAGE, r"bad\.onnx.*threshold\.value",
         setup=meta_set("threshold.value", None)),
    Case("meta-threshold-string-calibrate", ["calibrate", "bad.onnx", "--data", "{data}", "--num", "4"], USAGE,
         r"bad\.onnx.*threshold\.value", setup=meta_set("threshold.value", "abc"), absent=["bad.int8.onnx*", ".*tmp*"]),
    Case("meta-threshold-nan-run", ["run", "--model", "bad.onnx", *ONE_FRAME], USAGE, r"bad\.onnx.*threshold\.value",
         setup=meta_set("threshold.value", float("nan"))),
    Case("meta-threshold-nan-calibrate", ["calibrate", "bad.onnx", "--data", "{data}", "--num", "4"], USAGE,
         r"bad\.onnx.*threshold\.value", setup=meta_set("threshold.value", float("nan")), absent=["bad.int8.onnx*"]),
    Case("meta-threshold-inf-eval", ["eval", "--model", "bad.onnx", "--data", "{data}"], USAGE, r"bad\.onnx.*threshold\.value",
         setup=meta_set("threshold.value", float("inf"))),
    Case("meta-threshold-build", ["build", "bad.onnx"], USAGE, r"bad\.onnx.*threshold\.value", setup=meta_set("threshold.value", "abc")),
    Case("meta-score-stats-string", ["bench", "--model", "bad.onnx"], USAGE, r"bad\.onnx.*score_stats", setup=meta_set("score_stats", "abc")),
    Case("meta-score-stats-field-string", ["run", "--model", "bad.onnx", *ONE_FRAME], USAGE, r"bad\.onnx.*score_stats\.mean",
         setup=meta_set("score_stats.mean", "x")),
    Case("meta-scale-zero", ["run", "--model", "bad.onnx", *ONE_FRAME], USAGE, r"bad\.onnx.*input\.scale", setup=meta_set("input.scale", 0)),
    Case("meta-scale-string", ["bench", "--model", "bad.onnx"], USAGE, r"bad\.onnx.*input\.scale", setup=meta_set("input.scale", "x")),
    Case("meta-std-nan", ["run", "--model", "bad.onnx", *ONE_FRAME], USAGE, r"bad\.onnx.*input\.std",
         setup=meta_set("input.std", [float("nan")] * 3)),
    Case("meta-size-strings", ["eval", "--model", "bad.onnx", "--data", "{data}"], USAGE, r"bad\.onnx.*input\.size",
         setup=meta_set("input.size", ["64", "64"])),
    Case("meta-size-huge", ["run", "--model", "bad.onnx", *ONE_FRAME], USAGE, r"bad\.onnx.*input\.size",
         setup=meta_set("input.size", [1000000, 1000000])),
    Case("meta-input-null", ["bench", "--model", "bad.onnx"], USAGE, r"bad\.onnx.*input", setup=meta_set("input", None)),
    Case("meta-outputs-string", ["run", "--model", "bad.onnx", *ONE_FRAME], USAGE, r"bad\.onnx.*outputs", setup=meta_set("outputs", "score")),
    Case("run-threshold-nan", ["run", "--model", "{onnx}", *ONE_FRAME, "--threshold", "nan"], USAGE, r"--threshold"),
    Case("run-threshold-inf", ["run", "--model", "{onnx}", *ONE_FRAME, "--threshold", "inf"], USAGE, r"--threshold"),
    # -- T6: tampered checkpoints, bad train flags (refused before the data is read; no run folder) ------
    Case("ckpt-extra-config-key", ["eval", "--model", "bad.pt", "--data", "{data}"], USAGE, r"bad\.pt.*config",
         setup=tampered_checkpoint(lambda c: c["config"].update(nosuch=1))),
    Case("ckpt-negative-size", ["export", "--model", "bad.pt"], USAGE, r"bad\.pt.*preprocess",
         setup=tampered_checkpoint(lambda c: c["preprocess"].update(size=[-5, -5])), absent=["bad.onnx"]),
    Case("ckpt-no-state-dict", ["export", "--model", "bad.pt"], USAGE, r"bad\.pt.*state_dict",
         setup=tampered_checkpoint(lambda c: c.pop("state_dict")), absent=["bad.onnx"]),
    Case("ckpt-empty-preprocess", ["export", "--model", "bad.pt"], USAGE, r"bad\.pt.*preprocess",
         setup=tampered_checkpoint(lambda c: _set(c, "preprocess", {})), absent=["bad.onnx"]),
    Case("ckpt-threshold-nan", ["export", "--model", "bad.pt"], USAGE, r"bad\.pt.*threshold",
         setup=tampered_checkpoint(lambda c: c["meta"]["threshold"].update(value=float("nan"))), absent=["bad.onnx"]),
    Case("ckpt-plain-pickle", ["eval", "--model", "bad.pt", "--data", "{data}"], USAGE, r"bad\.pt", setup=plain_pickle),
    Case("train-lr-nan", ["train", "--model", "ganomaly", "--data", "{data}", "--lr", "nan", *TINY_GAN], USAGE, r"--lr", absent=[NO_RUN]),
    Case("train-nz-negative", ["train", "--model", "ganomaly", "--data", "{data}", *TINY_GAN, "--nz", "-5"], USAGE, r"--nz", absent=[NO_RUN]),
    Case("train-device-bogus-gaussian", ["train", "--model", "gaussian", "--data", "{data}", "--img-size", "64", "--device", "bogus"], USAGE, r"--device bogus",
         absent=[NO_RUN]),
    Case("train-device-bogus-gan", ["train", "--model", "skip-ganomaly", "--data", "{data}", "--device", "bogus"], USAGE, r"--device bogus",
         absent=[NO_RUN]),
    # -- U6: zero or negative never silently becomes the default -----------------------------------------
    Case("train-img-size-0", ["train", "--model", "gaussian", "--data", "{data}", "--img-size", "0"], USAGE, r"--img-size", absent=[NO_RUN]),
    Case("train-batch-0", ["train", "--model", "gaussian", "--data", "{data}", "--batch", "0"], USAGE, r"--batch", absent=[NO_RUN]),
    Case("train-nz-0", ["train", "--model", "ganomaly", "--data", "{data}", "--nz", "0"], USAGE, r"--nz", absent=[NO_RUN]),
    Case("train-width-0", ["train", "--model", "ganomaly", "--data", "{data}", "--width", "0"], USAGE, r"--width", absent=[NO_RUN]),
    Case("train-epochs-0", ["train", "--model", "ganomaly", "--data", "{data}", "--epochs", "0"], USAGE, r"--epochs", absent=[NO_RUN]),
    Case("run-print-every-0", ["run", "--model", "{onnx}", *ONE_FRAME, "--print-every", "0"], USAGE, r"--print-every"),
    Case("run-print-every-negative", ["run", "--model", "{onnx}", *ONE_FRAME, "--print-every", "-1"], USAGE, r"--print-every"),
    Case("build-workspace-nan", ["build", "{onnx}", "--workspace", "nan"], USAGE, r"--workspace"),
    Case("eval-batch-0", ["eval", "--model", "{onnx}", "--data", "{data}", "--batch", "0"], USAGE, r"--batch"),
    # -- T2: --threads bounded ------------------------------------------------------------------------
    Case("bench-threads-huge", ["bench", "--model", "{onnx}", "--threads", "100000", "--iters", "1"], USAGE, r"--threads", timeout=30),
    Case("bench-threads-0", ["bench", "--model", "{onnx}", "--threads", "0", "--iters", "1"], USAGE, r"--threads"),
    Case("bench-threads-negative", ["bench", "--model", "{onnx}", "--threads", "-2", "--iters", "1"], USAGE, r"--threads"),
    # -- U5: nothing readable is an error ---------------------------------------------------------------
    Case("bench-data-unreadable", ["bench", "--model", "{onnx}", "--data", "junk", "--iters", "1"], USAGE, r"junk", setup=unreadable_images),
    # -- U2: every output path checked before the work ---------------------------------------------------
    Case("eval-json-folder", ["eval", "--model", "{onnx}", "--data", "{data}", "--json", "out"], USAGE, r"--json out", setup=a_folder("out")),
    Case("eval-json-unwritable", ["eval", "--model", "{onnx}", "--data", "{data}", "--json", "afile/m.json"], OUTPUT, r"afile/m\.json",
         setup=a_file()),
    Case("eval-plots-file", ["eval", "--model", "{onnx}", "--data", "{data}", "--plots", "afile"], USAGE, r"--plots afile", setup=a_file()),
    Case("bench-json-folder", ["bench", "--model", "{onnx}", "--iters", "1", "--json", "out"], USAGE, r"--json out", setup=a_folder("out")),
    Case("export-out-folder", ["export", "--model", "{ckpt}", "--out", "x.onnx"], USAGE, r"--out x\.onnx", setup=a_folder("x.onnx")),
    Case("export-out-unwritable", ["export", "--model", "{ckpt}", "--out", "afile/x.onnx"], OUTPUT, r"afile/x\.onnx", setup=a_file()),
    Case("run-events-unwritable", ["run", "--model", "{onnx}", *ONE_FRAME, "--events", "afile/e.jsonl"], OUTPUT, r"--events afile/e\.jsonl",
         setup=a_file()),
    Case("train-out-file", ["train", "--model", "gaussian", "--data", "{data}", "--img-size", "64", "--out", "afile"], USAGE, r"--out afile", setup=a_file()),
    Case("calibrate-out-txt", ["calibrate", "{onnx}", "--data", "{data}", "--out", "x.txt"], USAGE, r"--out must end in \.onnx, got x\.txt", absent=["x.txt*"]),
    Case("calibrate-out-folder", ["calibrate", "{onnx}", "--data", "{data}", "--out", "out.onnx"], USAGE, r"--out out\.onnx",
         setup=a_folder("out.onnx")),
    # -- U10: hints that fit -------------------------------------------------------------------------
    Case("eval-model-nosuch", ["eval", "--model", "nosuch", "--data", "{data}"], USAGE, r"^(?!.*train --model nosuch).*nosuch"),
    Case("eval-model-folder-named-onnx", ["eval", "--model", "x.onnx", "--data", "{data}"], USAGE, r"x\.onnx is a folder",
         setup=a_folder("x.onnx")),
    # -- U8: demo flags before the data set is made ------------------------------------------------------
    Case("demo-img-size-16", ["demo", "--img-size", "16"], USAGE, r"--img-size", absent=["runs/demo"]),
    Case("demo-img-size-negative", ["demo", "--img-size", "-5"], USAGE, r"--img-size", absent=["runs/demo"]),
    # -- D3: export validates first; a previous good model survives --------------------------------------
    Case("export-bad-ckpt-keeps-model", ["export", "--model", "bad.pt", "--out", "good.onnx"], USAGE, r"bad\.pt",
         setup=both(good_onnx_at(), lambda s, fx: (s / "bad.pt").write_bytes(b"garbage")), survives=["good.onnx"]),
    Case("export-num-0-keeps-model", ["export", "--model", "{ckpt}", "--out", "good.onnx", "--int8", "--data", "{data}", "--num", "0"],
         USAGE, r"--num", setup=good_onnx_at(), survives=["good.onnx"], absent=["good.int8.onnx", ".good.onnx.*"]),
    # -- U9: no library noise around the line ---------------------------------------------------------
    Case("eval-truncated-png-quiet", ["eval", "--model", "{onnx}", "--data", "trunc"], 0, "", setup=data_with_truncated_test_png,
         forbid=[r"WARN", r"libpng"]),
    Case("calibrate-truncated-png-quiet", ["calibrate", "{onnx}", "--data", "trunc", "--num", "4", "--out", "q.onnx"], 0, "",
         setup=data_with_truncated_test_png, forbid=[r"WARN", r"libpng"], timeout=TRAINS),
    Case("train-truncated-png-quiet", ["train", "--model", "gaussian", "--data", "trunc", "--img-size", "32"], 0, "",
         setup=data_with_truncated_test_png, forbid=[r"WARN", r"libpng"], timeout=TRAINS),
    Case("run-truncated-video-quiet", ["run", "--model", "{onnx}", "--source", "t.mp4", "--headless"], SOURCE,
         r"cannot open source t\.mp4", setup=truncated_video),
    # -- T1: a non-UTF-8 file name (from a Windows share) trains, both model families --------------------
    Case("train-non-utf8-name-gaussian", ["train", "--model", "gaussian", "--data", "imgs", "--img-size", "32"], 0, "",
         setup=image_folder(5, NON_UTF8), timeout=TRAINS),
    Case("train-non-utf8-name-gan", ["train", "--model", "ganomaly", "--data", "imgs", *TINY_GAN], 0, "", setup=image_folder(5, NON_UTF8), timeout=TRAINS),
    # a taken --name fails before the fit (it used to fail after it, minutes later on real data)
    Case("train-gaussian-taken-name", ["train", "--model", "gaussian", "--data", "{data}", "--img-size", "64", "--name", "done"], USAGE,
         r"run folder .*done already exists", setup=finished_gaussian_run, survives=["runs/gaussian/done/weights/best.pt"], timeout=30),
    # -- U3: a failed run folder does not trap the user ------------------------------------------------
    Case("train-reuses-failed-run-folder", ["train", "--model", "ganomaly", "--data", "imgs", "--name", "exp1", *TINY_GAN], 0, "",
         setup=both(image_folder(5), failed_gan_run), timeout=TRAINS),
    Case("train-gan-two-images", ["train", "--model", "ganomaly", "--data", "imgs", *TINY_GAN], USAGE, r"at least 3",
         setup=image_folder(2), absent=[NO_RUN], timeout=TRAINS),
    # -- T3: a full disk (RLIMIT_FSIZE) while saving: one line, exit 4, no run folder with only train.log --
    Case("train-full-disk-gaussian", ["train", "--model", "gaussian", "--data", "imgs", "--img-size", "32"], OUTPUT,
         r"cannot write .*best\.pt", setup=image_folder(5), absent=[NO_RUN, "runs/**/*.tmp"], max_file_bytes=1 << 20, alone=False, timeout=TRAINS),
    Case("train-full-disk-gan", ["train", "--model", "ganomaly", "--data", "imgs", *TINY_GAN, "--width", "32"], OUTPUT,
         r"cannot write .*\.pt", setup=image_folder(5), absent=[NO_RUN, "runs/**/*.tmp"], max_file_bytes=1 << 20, alone=False, timeout=TRAINS),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, gaussian_onnx, gaussian_run, texture_data, tmp_path):
    run_case(case, tmp_path, {"onnx": str(gaussian_onnx), "ckpt": str(gaussian_run), "data": str(texture_data)})


# -- signals and races: what a table row cannot express --------------------------------------------
def _default_sigint():
    # a suite started in the background of a shell inherits SIGINT ignored, and Python then never
    # raises KeyboardInterrupt: give the command the Ctrl-C a user's terminal would deliver
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(args, cwd, env=None):
    env = dict(os.environ, **(env or {}))
    env.pop("EDGEANO_DEBUG", None)
    return subprocess.Popen([str(EDGEANO), *map(str, args)], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=_default_sigint)


def _wait_for(cond, proc, timeout=120.0):
    t0 = time.monotonic()
    while not cond():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"exited {proc.returncode} before the moment to signal\n{err}\n{out}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            pytest.fail("timed out waiting for the moment to signal")
        time.sleep(0.02)


def _wait_for_line(proc, text, timeout=300.0):
    """Read the child's stdout (PYTHONUNBUFFERED) until a line holds `text`."""
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        for line in proc.stdout:
            if text in line:
                return line
    finally:
        timer.cancel()
    pytest.fail(f"exited {proc.wait()} without printing {text!r}\n{proc.stderr.read()}")


def test_ctrl_c_during_export_parity_keeps_the_previous_model(gaussian_run, gaussian_onnx, tmp_path):
    """D3: Ctrl-C while the fresh ONNX is checked against PyTorch: exit 130, the previous model
    byte for byte, no temp file."""
    good = tmp_path / "good.onnx"
    shutil.copy(gaussian_onnx, good)
    before = good.read_bytes()
    p = _start(["export", "--model", gaussian_run, "--out", good, "--no-build"], tmp_path, env={"PYTHONUNBUFFERED": "1"})
    _wait_for_line(p, "against PyTorch")
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "Traceback" not in err and good.read_bytes() == before
    assert not list(tmp_path.glob(".good.onnx.*")), "temp file left"


def test_sigterm_during_calibrate_cleans_up(gaussian_onnx, texture_data, tmp_path):
    """D6: SIGTERM (systemd, docker stop) mid-calibration removes its temporary ONNX files, as Ctrl-C does."""
    src = tmp_path / "m.onnx"
    shutil.copy(gaussian_onnx, src)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    p = _start(["calibrate", src, "--data", texture_data, "--num", "16"], tmp_path, env={"TMPDIR": str(tmp)})
    _wait_for(lambda: any(tmp.glob("edgeano-calib-*/pre.onnx")), p)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 143, err
    assert "Traceback" not in err
    left = [f for f in tmp.iterdir() if f.name != ".ses"]  # .ses: onnxruntime's own session id, written on import
    assert not left, f"left in the temp folder: {left}"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["m.onnx", "tmp"], "left beside the output"


def test_two_exports_racing_on_one_out_both_succeed(gaussian_run, tmp_path):
    """U10: two exports of different checkpoints on one --out: each checks its own temp file, so
    neither compares its PyTorch model with the other's ONNX ("the export is wrong")."""
    import torch

    other = tmp_path / "other.pt"
    ckpt = torch.load(gaussian_run, weights_only=True)
    ckpt["state_dict"]["gaussians.0.mean"] += 1.0  # other weights: other scores
    torch.save(ckpt, other)
    out = tmp_path / "m.onnx"
    procs = [_start(["export", "--model", m, "--out", out, "--no-build"], tmp_path) for m in (gaussian_run, other)]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    for o, e, rc in results:
        assert rc == 0, e
    from edgeano.artifact import read_onnx_metadata

    assert read_onnx_metadata(out)["source_checkpoint"] in ("best.pt", "other.pt")
    assert not list(tmp_path.glob(".m.onnx.*"))


def test_interrupted_demo_leaves_no_data_set_to_reuse(tmp_path):
    """D7: Ctrl-C while the demo makes its data set: nothing half-made is left where the next demo looks."""
    out = tmp_path / "demo"
    p = _start(["demo", "--out", out, "--img-size", "32"], tmp_path)
    _wait_for(lambda: any(out.glob("*/train/good/*.png")) if out.exists() else False, p)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert not out.exists() or not list(out.iterdir()), f"left: {list(out.iterdir())}"


def test_demo_rebuilds_an_incomplete_data_set(tmp_path):
    """D7: a partial data set (an interrupted older demo) is made again, never silently reused."""
    from edgeano.demo import demo_dataset

    data = tmp_path / "data"
    (data / "train" / "good").mkdir(parents=True)
    (data / "test" / "spot").mkdir(parents=True)
    (data / "train" / "good" / "000.png").write_bytes(b"\x89PNG truncated")
    got = demo_dataset(tmp_path, seed=0)
    assert got == data
    assert len(list((data / "train" / "good").iterdir())) == 80
    assert sorted(p.name for p in (data / "test").iterdir()) == ["good", "scratch", "smear", "spot"]
    assert all(len(list((data / "test" / c).iterdir())) == 10 for c in ("scratch", "smear", "spot"))
    mtime = (data / "train" / "good" / "000.png").stat().st_mtime_ns
    assert demo_dataset(tmp_path, seed=0) == data  # complete: reused as is
    assert (data / "train" / "good" / "000.png").stat().st_mtime_ns == mtime
