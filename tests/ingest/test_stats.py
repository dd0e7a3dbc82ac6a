"""Column statistics of the ingest: merged block statistics equal those of the whole."""

from __future__ import annotations

import numpy as np
import pytest

from ingest.stats import ColumnStats


def test_merged_statistics_equal_whole_statistics():
    rng = np.random.default_rng(0)
    values = rng.standard_normal((1000, 2)) * 1e3 + 1e9
    values[::9, 0] = np.nan
    whole = ColumnStats.of_columns(values, np.isnan(values))
    parts = [ColumnStats.of_columns(values[a:b], np.isnan(values[a:b])) for a, b in ((0, 10), (10, 700), (700, 1000))]
    for j in range(2):
        merged = parts[0][j].merge(parts[1][j]).merge(parts[2][j])
        assert merged.count == whole[j].count and merged.missing == whole[j].missing
        assert merged.mean == pytest.approx(whole[j].mean, rel=1e-12)
        assert merged.std == pytest.approx(np.nanstd(values[:, j]), rel=1e-9)
        assert (merged.min, merged.max) == (np.nanmin(values[:, j]), np.nanmax(values[:, j]))
