"""Small stores shared by the trainer tests (ingested once per session)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ingest import IngestConfig, ingest


def _ingest(tmp_path_factory, name, sources, **options):
    out = str(tmp_path_factory.mktemp(name) / "store.zarr")
    ingest(IngestConfig(sources=sources, out=out, workers=1, progress=False, **options))
    return out


@pytest.fixture(scope="session")
def quest_store(tmp_path_factory, quest_csv):
    """3000 quest rows, batch size 100, 20 % validation."""
    return _ingest(tmp_path_factory, "quest", [quest_csv], label="clear", batch_size=100, val_fraction=0.2)


@pytest.fixture(scope="session")
def tasks_store(tmp_path_factory):
    """1050 rows with one label column per task, missing values, and a row id; batch size 50 (last chunk short)."""
    rng = np.random.default_rng(0)
    n = 1050
    frame = pd.DataFrame({
        "row_id": np.arange(n),
        "x": rng.standard_normal(n).round(4),
        "x_missing": np.where(rng.random(n) < 0.3, np.nan, rng.standard_normal(n).round(3)),
        "n_missing": pd.array(np.where(rng.random(n) < 0.3, -1, rng.integers(0, 9, n)), dtype="Int64"),
        "colour": rng.choice(["red", "green", "blue"], n),
        "binary_int": rng.integers(0, 2, n),
        "binary_bool": rng.choice(["true", "false"], n),
        "binary_cat": rng.choice(["yes", "no"], n),
        "multi_cat": rng.choice(["a", "b", "c", "d"], n),
        "multi_int": rng.integers(0, 5, n),
        "target": rng.standard_normal(n).round(3) * 100,
        "label_missing": pd.array(np.where(rng.random(n) < 0.1, -1, rng.integers(0, 2, n)), dtype="Int64"),
    })
    frame.loc[frame["n_missing"] == -1, "n_missing"] = pd.NA
    frame.loc[frame["label_missing"] == -1, "label_missing"] = pd.NA
    path = tmp_path_factory.mktemp("tasks_csv") / "tasks.csv"
    frame.to_csv(path, index=False)
    return _ingest(tmp_path_factory, "tasks", [str(path)], batch_size=50, shuffle=False)
