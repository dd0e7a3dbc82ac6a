"""Seeded synthetic quest-log CSV generator (the founding example of this project).

One row per quest attempt, label ``clear`` (0/1). The label is drawn from a known logistic model, so the Bayes
accuracy is about 0.80 and the majority class about 0.55; a model that learns gets close to 0.80.

Columns (45): ``attempt_id`` (int64 beyond 2**53, must round-trip exactly), ``user_id``, ``started_at`` (epoch
seconds), ``level`` (int, ~5 % missing), ``party_size``, ``difficulty`` / ``job`` / ``region`` (categorical),
``quest_name`` (categorical, Japanese, some names contain commas so they are quoted), ``play_time`` (float),
``f00``..``f33`` (float, ~2 % missing in some) and ``clear``.

Example::

    python -m tools.synth --rows 1000000 --out data/quest.csv
    python -m tools.synth --rows 100000 --split-dir data/log_quest/splited --rows-per-file 1000
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["QUEST_NAMES", "generate_frame", "write_csv", "write_split_files", "main"]

QUEST_NAMES = (
    "竜の洞窟", "古代遺跡の謎", "森の守護者", "砂漠の行商人", "氷の城", "闇の塔", "海賊船の宝",
    "森, 第2章", "王都防衛戦", "星降る丘", "Slime Hunt", "Goblin Camp", "Dragon's Lair", "精霊の泉",
    "黄金の鍵, 前編", "黄金の鍵, 後編", "地下迷宮", "火山の試練", "Night Market", "月影の社",
)
DIFFICULTIES = ("easy", "normal", "hard", "nightmare")
JOBS = ("warrior", "mage", "archer", "healer", "thief", "騎士")
REGIONS = ("JP", "US", "EU", "KR", "TW")
N_FLOAT = 34
# Scale of the label's logit: Bayes accuracy ~0.80, positive rate ~0.45 (majority class 0.55).
LOGIT_SCALE = 1.12
_ROWS_PER_PIECE = 100_000


def generate_frame(rows: int, *, seed: int = 0, start: int = 0) -> pd.DataFrame:
    """Rows ``start .. start+rows`` of the synthetic log for ``seed`` (pieces concatenate to the whole log)."""
    rng = np.random.default_rng([seed, start])
    diff = rng.integers(0, len(DIFFICULTIES), rows)
    job = rng.integers(0, len(JOBS), rows)
    level = rng.integers(1, 100, rows)
    party = rng.integers(1, 5, rows)
    x = rng.standard_normal((rows, N_FLOAT)).astype(np.float64)
    w = np.zeros(N_FLOAT)
    w[:8] = [0.9, -0.7, 0.6, -0.5, 0.45, 0.4, -0.35, 0.3]
    logit = (x @ w + 0.025 * (level - 50) + 0.35 * (party - 2.5)
             - np.array([-1.2, -0.3, 0.5, 1.4])[diff] + np.array([0.2, -0.2, 0.1, 0.3, -0.1, 0.0])[job] - 0.28)
    clear = (rng.random(rows) < 1.0 / (1.0 + np.exp(-LOGIT_SCALE * logit))).astype(np.int8)
    frame = pd.DataFrame({
        "attempt_id": np.int64(9_007_199_254_740_993) + 2 * (start + np.arange(rows, dtype=np.int64)),
        "user_id": rng.integers(1, 2_000_000, rows),
        "started_at": np.int64(1_700_000_000) + start + np.arange(rows) + rng.integers(0, 60, rows),
        "level": pd.array(np.where(rng.random(rows) < 0.05, -1, level), dtype="Int64"),
        "party_size": party,
        "difficulty": np.asarray(DIFFICULTIES, dtype=object)[diff],
        "job": np.asarray(JOBS, dtype=object)[job],
        "region": np.asarray(REGIONS, dtype=object)[rng.integers(0, len(REGIONS), rows)],
        "quest_name": np.asarray(QUEST_NAMES, dtype=object)[rng.integers(0, len(QUEST_NAMES), rows)],
        "play_time": np.round(rng.gamma(2.0, 300.0, rows), 2),
    })
    frame.loc[frame["level"] == -1, "level"] = pd.NA
    floats = np.round(x, 4)
    floats[:, 20:][rng.random((rows, N_FLOAT - 20)) < 0.02] = np.nan
    for i in range(N_FLOAT):
        frame[f"f{i:02d}"] = floats[:, i]
    frame["clear"] = clear
    return frame


def _pieces(rows: int, seed: int, offset: int = 0):
    for start in range(0, rows, _ROWS_PER_PIECE):
        yield generate_frame(min(_ROWS_PER_PIECE, rows - start), seed=seed, start=offset + start)


def write_csv(path: str | os.PathLike, rows: int, *, seed: int = 0, sort_by_label: bool = False,
              offset: int = 0) -> Path:
    """Write a ``rows``-row quest log to ``path`` (streamed in pieces: memory stays bounded).

    ``sort_by_label`` writes all ``clear == 0`` rows first, the worst case for training on consecutive rows.
    ``offset`` starts at that row of the log, so several files can hold consecutive parts of one log.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as out:
        labels = (0, 1) if sort_by_label else (None,)
        for i, label in enumerate(labels):
            for j, piece in enumerate(_pieces(rows, seed, offset)):
                if label is not None:
                    piece = piece[piece["clear"] == label]
                piece.to_csv(out, index=False, header=(i == 0 and j == 0), lineterminator="\n")
    return path


def write_split_files(directory: str | os.PathLike, rows: int, *, seed: int = 0,
                      rows_per_file: int = 1000, offset: int = 0) -> list[Path]:
    """The layout people already have: ``split_data_00000.csv``, ... with ``rows_per_file`` rows each.

    ``offset`` skips the first rows of the log, so a validation folder can hold different rows.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for start in range(0, rows, rows_per_file):
        piece = generate_frame(min(rows_per_file, rows - start), seed=seed, start=offset + start)
        path = directory / f"split_data_{start // rows_per_file:05d}.csv"
        piece.to_csv(path, index=False, lineterminator="\n")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.synth", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="number of rows (default 100000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", help="write one CSV file here")
    parser.add_argument("--split-dir", help="write 1000-row files split_data_NNNNN.csv into this folder instead")
    parser.add_argument("--rows-per-file", type=int, default=1000, help="rows per file with --split-dir")
    parser.add_argument("--offset", type=int, default=0, help="first row of the log to write (--split-dir)")
    parser.add_argument("--sort-by-label", action="store_true", help="all clear=0 rows first (worst case)")
    args = parser.parse_args(argv)
    if bool(args.out) == bool(args.split_dir):
        parser.error("give exactly one of --out or --split-dir")
    if args.out:
        write_csv(args.out, args.rows, seed=args.seed, sort_by_label=args.sort_by_label)
    else:
        write_split_files(args.split_dir, args.rows, seed=args.seed, rows_per_file=args.rows_per_file,
                          offset=args.offset)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
