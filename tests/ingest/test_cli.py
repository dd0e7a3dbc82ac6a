"""The ingest command: every flag reaches the config, user errors are one line on stderr with exit 1."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ingest.cli import build_parser, config_from_args, main
from store import open_store
from tests.helpers import subprocess_env


def _config(argv):
    return config_from_args(build_parser().parse_args(argv))


def test_every_flag_reaches_the_config(tmp_path):
    schema = tmp_path / "schema.json"
    schema.write_text('{"a": "category"}')
    cfg = _config(["x.csv", "y.csv", "--out", "s.zarr", "--label", "clear", "--batch-size", "512",
                   "--val-fraction", "0.2", "--no-shuffle", "--seed", "7", "--workers", "3", "--compression", "zstd",
                   "--on-bad-rows", "skip", "--rejects", "r.csv", "--encoding", "cp932", "--dtype", "b=int",
                   "--schema", str(schema), "--sample-rows", "99", "--overwrite", "--quiet"])
    assert cfg.sources == ["x.csv", "y.csv"] and cfg.out == "s.zarr" and cfg.label == "clear"
    assert (cfg.batch_size, cfg.val_fraction, cfg.shuffle, cfg.seed, cfg.workers) == (512, 0.2, False, 7, 3)
    assert (cfg.compression, cfg.on_bad_rows, cfg.rejects, cfg.encoding) == ("zstd", "skip", "r.csv", "cp932")
    assert cfg.dtypes == {"a": "category", "b": "int"} and cfg.sample_rows == 99
    assert cfg.overwrite and not cfg.resume and not cfg.progress
    cfg = _config(["x.csv", "--val", "v1.csv", "v2/", "--out", "s", "--resume"])
    assert cfg.val == ["v1.csv", "v2/"] and cfg.resume and cfg.val_fraction is None
    assert cfg.shuffle and cfg.batch_size == 1000 and cfg.rejects == "s.rejects.csv"


def test_val_fraction_zero_means_no_validation_split(quest_csv, tmp_path, capsys):
    assert _config(["x.csv", "--out", "s", "--val-fraction", "0"]).val_fraction is None
    out = str(tmp_path / "s.zarr")
    assert main([quest_csv, "--out", out, "--label", "clear", "--val-fraction", "0", "--workers", "1", "--quiet"]) == 0
    assert open_store(out).rows == {"train": 3000}


def test_cli_ingests_and_prints_a_summary(quest_csv, tmp_path, capsys):
    out = str(tmp_path / "s.zarr")
    assert main([quest_csv, "--out", out, "--label", "clear", "--val-fraction", "0.1", "--workers", "1"]) == 0
    assert "ingested 3,000 rows" in capsys.readouterr().err
    assert open_store(out).label == "clear"


@pytest.mark.parametrize("argv,message", [
    (["missing.csv"], "missing.csv: no such file or folder"),
    (["{csv}", "--label", "nope"], "--label 'nope' is not a column"),
    (["{csv}", "--dtype", "nope=int"], "unknown columns ['nope']"),
    (["{csv}", "--dtype", "level=text"], "unknown type 'text'"),
    (["{csv}", "--dtype", "level"], "expected COL=TYPE"),
    (["{csv}", "--encoding", "utf-16"], "not ASCII-compatible"),
    (["{csv}", "--encoding", "klingon"], "unknown --encoding"),
    (["{csv}", "--batch-size", "0"], "--batch-size must be a positive"),
    (["{csv}", "--batch-size", "1000000000000"], "--batch-size 1,000,000,000,000 is over the limit of 1,048,576 rows"),
    (["{wide}", "--batch-size", "1000000"], ("makes chunks of 305 MiB (1,000,000 rows x 80 float32 columns); a "
                                             "chunk is built and read whole in memory, so it is limited to 256 MiB: "
                                             "pass --batch-size 838,860 or less")),
    (["{csv}", "--val-fraction", "1.5"], "--val-fraction must be at least 0 (0: no validation split) and below 1"),
    (["{csv}", "--val-fraction", "1"], "--val-fraction must be at least 0 (0: no validation split) and below 1, got 1"),
    (["{csv}", "--val-fraction", "-0.1"], "--val-fraction must be at least 0"),
    (["{csv}", "--val-fraction", "nan"], "--val-fraction must be at least 0"),
    (["{csv}", "--workers", "0"], "--workers must be >= 1"),
    (["{csv}", "--seed", "-1"], "--seed must be in"),
    (["{empty}"], "file is empty"),
    (["{header_only}"], "has a header but no data rows"),
    (["{csv}", "{other}"], "header differs from"),
    (["{folder}"], "folder holds no *.csv files"),
    (["{tmp}/*.nothing"], "pattern matches no files"),
])
def test_user_errors_are_one_line(tmp_path, quest_csv, capsys, argv, message):
    files = {"csv": quest_csv, "tmp": str(tmp_path), "folder": str(tmp_path / "folder")}
    (tmp_path / "folder").mkdir()
    wide = ",".join(f"c{i}" for i in range(80)) + "\n" + ",".join(["0.5"] * 80) + "\n"
    for name, text in (("empty", ""), ("header_only", "a,b\n"), ("other", "a,b\n1,2\n"), ("wide", wide)):
        files[name] = str(tmp_path / f"{name}.csv")
        (tmp_path / f"{name}.csv").write_text(text)
    argv = [a.format(**files) for a in argv] + ["--out", str(tmp_path / "s.zarr"), "--quiet"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("ingest: error: ") and err.count("\n") == 1 and message in err


def test_command_line_entry_point_has_no_traceback(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n3\n")
    proc = subprocess.run([sys.executable, "-m", "ingest", str(bad), "--out", str(tmp_path / "s")],
                          capture_output=True, text=True, env=subprocess_env())
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"ingest: error: {bad}:3: expected 2 fields, found 1; fix the row's "
                                   "separators/quotes, or pass --on-bad-rows skip --rejects FILE")
    help_text = subprocess.run([sys.executable, "-m", "ingest", "--help"], capture_output=True, text=True,
                               env=subprocess_env()).stdout
    for flag in ("--val-fraction", "--no-shuffle", "--on-bad-rows", "--resume", "--compression", "examples:"):
        assert flag in help_text


def test_ingest_does_not_import_tensorflow():
    code = "import sys, ingest.cli; sys.exit('tensorflow' in sys.modules or 'keras' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], env=subprocess_env()).returncode == 0
