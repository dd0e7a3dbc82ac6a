"""A tool whose optional package is missing stops before any work with one line naming the bench extra."""

from __future__ import annotations

import pytest

import tools._extras
from tools import bench, bench_categories, bench_remote, bench_scale
from tools._extras import require
from tools.measure import run_measured


def test_require_names_the_missing_modules_and_the_extra(capsys):
    require("json", "os")  # present: nothing happens
    with pytest.raises(SystemExit) as stopped:
        require("json", "no_such_module_qs", "nor.this_one")
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "no_such_module_qs, nor.this_one not installed" in err[0] and "pip install '.[bench]'" in err[0]


@pytest.mark.parametrize("main, argv, module", [
    (bench.main, ["--quick", "--out"], "pyarrow"),
    (bench.main, ["--quick", "--out"], "psutil"),
    (bench_categories.main, ["--quick", "--data"], "psutil"),
    (bench_remote.main, ["--rows", "10", "--repeat", "1", "--windows", "1"], "moto"),
    (bench_scale.main, ["--rows", "10"], "distributed"),
], ids=["bench-pyarrow", "bench-psutil", "categories-psutil", "remote-moto", "scale-distributed"])
def test_each_tool_checks_its_extra_before_it_starts(tmp_path, monkeypatch, capsys, main, argv, module):
    importable = tools._extras._importable
    monkeypatch.setattr(tools._extras, "_importable", lambda m: m != module and importable(m))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        main(argv + [str(tmp_path / "out")] if argv[-1].startswith("--") else argv)
    assert stopped.value.code == 2
    assert f"{module} not installed" in capsys.readouterr().err and list(tmp_path.iterdir()) == []


def test_run_measured_names_the_extra_without_psutil(monkeypatch, capsys):
    importable = tools._extras._importable
    monkeypatch.setattr(tools._extras, "_importable", lambda m: m != "psutil" and importable(m))
    with pytest.raises(SystemExit):
        run_measured(["true"])
    assert "pip install '.[bench]'" in capsys.readouterr().err
