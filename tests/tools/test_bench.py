"""The benchmarks run at tiny size in the suite, so they cannot silently break."""

from __future__ import annotations

import os
import re

import pytest

from tools import bench_ingest, bench_loader, bench_quality


def _rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| ---")]


def test_ingest_benchmark_quick(tmp_path, capsys):
    assert bench_ingest.main(["--quick", "--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("machine: ") and "cores" in out
    row = _rows(out)[1]
    assert re.search(r"\| 5,000 rows, \d+ MB \| lz4 \| [\d.]+ s .* \| [\d.]+x \| \d+ / \d+ MiB \| [\d.]+ \|", row)


def test_ingest_scaling_benchmark_quick_runs_without_tensorflow(tmp_path):
    """--files N: N files written in parallel, ingested with each worker count against 1 and N pandas processes; on
    a machine without TensorFlow (imports of tensorflow or keras fail in every process of the run)."""
    import subprocess
    import sys

    from tests.helpers import ROOT
    blocker = tmp_path / "no_tf"
    blocker.mkdir()
    for module in ("tensorflow", "keras"):
        (blocker / f"{module}.py").write_text(f"raise ImportError('no {module} on this machine')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocker), ROOT]))
    result = subprocess.run([sys.executable, "-m", "tools.bench_ingest", "--files", "2", "--quick", "--workers", "1,2",
                             "--data", str(tmp_path / "data")], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert out.startswith("machine: ") and "input: 2 CSV files, 8,000 rows" in out
    assert sorted(os.listdir(tmp_path / "data" / "files_2x8000")) == ["part_000.csv", "part_001.csv"]
    rows = {r.split("|")[1].strip(): r for r in _rows(out)[1:]}
    assert list(rows) == ["pandas.read_csv(chunksize), 1 process, the 2 files in turn",
                          "pandas.read_csv(chunksize), 2 processes, one file each", "ingest --workers 1",
                          "ingest --workers 2"]
    number = r"[\d,.]+"
    assert re.fullmatch(rf"\| ingest --workers 2 \| 2 \| {number} \| {number} \| {number}x \| {number}x \| "
                        rf"{number}x \| {number} \| ({number} / ){{4}}{number} \|", rows["ingest --workers 2"])
    assert rows["pandas.read_csv(chunksize), 2 processes, one file each"].endswith("| - |")


@pytest.mark.slow
def test_loader_benchmark_quick(tmp_path, capsys):
    assert bench_loader.main(["--quick", "--data", str(tmp_path)]) == 0
    rows = _rows(capsys.readouterr().out)
    names = [r.split("|")[1].strip() for r in rows]
    assert "np.memmap copy of the same bytes (floor)" in names
    assert any(n.startswith("StoreSequence (this project") for n in names)
    assert "seed-style: pandas.read_csv per 1000-row file" in names
    assert "in-RAM numpy arrays (floor)" in names and "StoreSequence, 2 processes (shared memory)" in names
    feed = [r for r in rows if r.startswith("| StoreSequence, 1 thread |")][0]
    assert re.search(r"\| 1000 \| [\d.]+ \| [\d.]+x \| \d+ \|$", feed), feed  # the training side's feed cost


@pytest.mark.slow
def test_gpu_benchmark_runs_on_the_cpu_under_jax(tmp_path):
    """The GPU machines have JAX but no TensorFlow: the tool's --cpu mode runs the same path, tiny."""
    import subprocess
    import sys

    from tests.helpers import subprocess_env
    pytest.importorskip("jax")
    result = subprocess.run([sys.executable, "-m", "tools.bench_gpu", "--cpu", "--data", str(tmp_path)],
                            env=subprocess_env() | {"KERAS_BACKEND": "jax"}, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert out.startswith("machine: ") and "backend: jax" in out
    names = [r.split("|")[1].strip() for r in _rows(out)[1:]]
    assert "in-RAM numpy arrays" in names and "StoreSequence, 1 thread, steps_per_execution=4" in names
    assert any(n.startswith("seed recipe: CSV Sequence") for n in names)


@pytest.mark.slow
def test_quality_benchmark_quick(tmp_path, capsys):
    assert bench_quality.main(["--quick", "--data", str(tmp_path)]) == 0
    rows = _rows(capsys.readouterr().out)[1:]
    assert len(rows) == 3
    for row in rows:
        assert 0.5 < float(row.split("|")[3]) <= 1.0


@pytest.mark.slow
def test_suite_quick_writes_tables_and_charts(tmp_path, capsys):
    from tools import bench
    assert bench.main(["--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    names = [r.split("|")[1].strip() for r in _rows(out)]
    for expected in ("ingest (this project, all cores)", "pyarrow.csv streaming pass",
                     "tf.data make_csv_dataset, 1000-row files", "seed-style CSV Sequence, 2 worker processes",
                     "tf.data make_csv_dataset", "in-RAM numpy arrays (floor)"):
        assert expected in names
    for name in ("bench.md", "ingest.png", "loader.png", "feed.png"):
        assert (tmp_path / name).stat().st_size > 1000
