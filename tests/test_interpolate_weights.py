"""tools/interpolate_weights.py: weight-space interpolation with the pretrained start."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import load_tool
from vinocr.errors import VinocrError


def test_interpolate_mixes_float_tensors_and_keeps_counters() -> None:
    tool = load_tool("interpolate_weights")
    start = {"w": np.array([0.0, 2.0], np.float32), "n": np.array([3], np.int64)}
    tuned = {"w": np.array([4.0, -2.0], np.float32), "n": np.array([9], np.int64)}
    mixed = tool.interpolate(start, tuned, 0.25)
    np.testing.assert_allclose(mixed["w"], [1.0, 1.0], rtol=1e-6)
    assert mixed["w"].dtype == np.float32 and mixed["n"].tolist() == [9]
    np.testing.assert_array_equal(tool.interpolate(start, tuned, 1.0)["w"], tuned["w"])
    np.testing.assert_array_equal(tool.interpolate(start, tuned, 0.0)["w"], start["w"])
    with pytest.raises(VinocrError, match="different tensors"):
        tool.interpolate({"v": start["w"]}, tuned, 0.5)
    with pytest.raises(VinocrError, match="tensor w: shape"):
        tool.interpolate({"w": np.zeros(3, np.float32), "n": start["n"]}, tuned, 0.5)


def test_alpha_is_never_chosen_on_a_test_split(tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    tool = load_tool("interpolate_weights")
    test = tmp_path / "test.txt"
    test.write_text("a.png\tABC\n", encoding="utf-8")
    cfg = Path(__file__).resolve().parents[1] / "configs/vin/ppocrv6_small.yml"
    assert tool.main(["-c", str(cfg), "--model", str(tmp_path), "--data", str(test)]) == 2
    assert "validation" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tool.main(["-c", str(cfg), "--model", str(tmp_path), "--data", str(test),
                   "--alphas", "1.5"])
