"""Plot commands write real PNG files; bad CSVs are named in the error."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from videopanda.plots import main, plot_accuracy_vs_chance, plot_curves, read_efficiency_csv

REPO = Path(__file__).resolve().parents[1]


def _assert_png(path: Path, min_side: int = 200) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert min(im.size) >= min_side
        assert sum(1 for c in im.convert("L").histogram() if c) > 10  # something was drawn, not a blank canvas


def test_plot_efficiency_command_writes_a_valid_png(tmp_path):
    out = tmp_path / "eff.png"
    assert main(["efficiency", str(REPO / "results" / "efficiency.csv"), "--out", str(out)]) == 0
    _assert_png(out)


def test_efficiency_csv_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("series,model,visual_params_m,accuracy,train_samples_k,benchmark\nx,m,forty,50,1,b\n")
    with pytest.raises(ValueError, match=r"bad\.csv:2: visual_params_m is not a number"):
        read_efficiency_csv(bad)
    bad.write_text("series,model\nx,m\n")
    with pytest.raises(ValueError, match="missing column"):
        read_efficiency_csv(bad)


def test_curves_and_accuracy_plots(tmp_path):
    curves = plot_curves(
        {"loss/lm": [(i, 3.0 / (i + 1)) for i in range(20)], "loss/distill": [(i, 1.0 - i / 40) for i in range(20)]},
        tmp_path / "c.png",
    )
    _assert_png(curves)
    acc = plot_accuracy_vs_chance(
        {"colour": {"accuracy": 90.0, "chance": 16.7}, "direction": {"accuracy": 60.0, "chance": 25.0}},
        tmp_path / "a.png",
    )
    _assert_png(acc)
