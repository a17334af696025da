"""videopanda.utils.tables: the training-curve table the diagnostic benchmarks print."""

from __future__ import annotations

import pytest

from videopanda.utils.tables import curve_table


def test_curve_table_has_one_row_per_evaluation_in_percent():
    text = curve_table(["shape", "direction"], [(150, 1.3861, [0.25, 0.5], 12.4), (300, 0.5, [0.561, 1.0], 25.0)])
    assert text.splitlines() == [
        "| step | train loss | shape % | direction % | seconds |",
        "|---|---|---|---|---|",
        "| 150 | 1.386 | 25.0 | 50.0 | 12 |",
        "| 300 | 0.500 | 56.1 | 100.0 | 25 |",
    ]


def test_curve_table_refuses_a_row_of_the_wrong_width():
    with pytest.raises(ValueError, match="step 7: 1 accuracies for 2 columns"):
        curve_table(["a", "b"], [(7, 0.1, [0.5], 1.0)])
