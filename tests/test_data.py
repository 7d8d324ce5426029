"""Image decoding of odd files, dataset layouts, and the one Preprocess definition."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgeano.data.datasets import fingerprint, load_dataset
from edgeano.data.images import read_image, read_images
from edgeano.data.preprocess import Preprocess
from edgeano.errors import EdgeanoError


def _photo(texture_data):
    return cv2.imread(str(sorted((texture_data / "train" / "good").iterdir())[0]))


def test_read_image_handles_gray_16bit_alpha(tmp_path, texture_data):
    bgr = _photo(texture_data)
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    cv2.imwrite(str(tmp_path / "deep.png"), gray.astype(np.uint16) * 257)  # 16-bit, same content
    cv2.imwrite(str(tmp_path / "alpha.png"), cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA))
    g, d, a = (read_image(tmp_path / n) for n in ("gray.png", "deep.png", "alpha.png"))
    for img in (g, d, a):
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    np.testing.assert_array_equal(g, d)  # 16-bit maps back onto the 8-bit values
    np.testing.assert_array_equal(a, bgr)  # alpha dropped, colour untouched
    np.testing.assert_array_equal(g[:, :, 0], gray)


def test_corrupt_and_foreign_files_are_skipped(tmp_path, texture_data):
    good = tmp_path / "ok.png"
    cv2.imwrite(str(good), _photo(texture_data))
    (tmp_path / "trunc.png").write_bytes(good.read_bytes()[:100])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    imgs, ok, skipped = read_images(sorted(tmp_path.iterdir()))
    assert [p.name for p in ok] == ["ok.png"]
    assert sorted(p.name for p in skipped) == ["empty.jpg", "text.png", "trunc.png"]
    assert read_image(tmp_path / "missing.png") is None


def test_dataset_layouts(tmp_path, texture_data):
    ds = load_dataset(texture_data)
    assert ds.layout == "mvtec" and len(ds.train) == 40
    assert ds.n_normal == 12 and ds.n_anomalous == 18 and ds.has_anomalies
    assert all(t.mask is not None and t.mask.exists() for t in ds.test if t.label)
    plain = load_dataset(texture_data / "train" / "good")
    assert plain.layout == "folder" and len(plain.train) == 40 and not plain.test
    with pytest.raises(EdgeanoError, match="no images"):
        load_dataset(tmp_path)
    with pytest.raises(EdgeanoError, match="not found"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(EdgeanoError, match="test/"):
        load_dataset(texture_data / "train" / "good", need_test=True)


def test_fingerprint_tracks_content(tmp_path, texture_data):
    files = load_dataset(texture_data).train[:5]
    a = fingerprint(files)
    assert a == fingerprint(list(reversed(files))) and a.startswith("sha256:")
    assert a != fingerprint(files[:4])


def test_preprocess_contract(texture_data):
    """Resize (area), BGR->RGB, [0,1], NCHW float32; mean/std left to the graph."""
    bgr = _photo(texture_data)
    pre = Preprocess(size=(32, 48), color="RGB")
    x = pre.batch([bgr, bgr[:50, :40]])
    assert x.shape == (2, 3, 32, 48) and x.dtype == np.float32
    expect = cv2.resize(bgr, (48, 32), interpolation=cv2.INTER_AREA)[:, :, ::-1].transpose(2, 0, 1) / 255.0
    np.testing.assert_allclose(x[0], expect, atol=1e-6)
    assert 0.0 <= x.min() and x.max() <= 1.0
    gray = Preprocess(size=(16, 16), color="GRAY", mean=(0.5,), std=(0.5,))
    assert gray.batch([bgr]).shape == (1, 1, 16, 16)
    assert Preprocess.from_dict(pre.to_dict()) == pre


@pytest.mark.parametrize("bad", [dict(size=(4, 4)), dict(color="HSV"), dict(interpolation="magic"), dict(std=(0, 1, 1)), dict(mean=(0.5,))])
def test_preprocess_rejects_bad_settings(bad):
    with pytest.raises(ValueError):
        Preprocess(**bad)
