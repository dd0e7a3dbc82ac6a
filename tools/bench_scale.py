"""Scale-out paths on one machine: ingest on a Dask cluster vs local processes, and multi-worker training vs one
process (medians of ``--repeat`` runs, baselines measured in the same run).

    python -m tools.bench_scale [--rows 300000] [--epochs 2] [--repeat 3]

Everything runs on 127.0.0.1: a Dask scheduler with two single-threaded worker processes; two TensorFlow workers
under MultiWorkerMirroredStrategy (TF_CONFIG). On one small machine these measure the overhead of the distributed
engines, not a speed-up: the speed-up comes from more machines.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from tools._extras import require
from tools.measure import free_ports, machine, median


def _env() -> dict:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""), TF_CPP_MIN_LOG_LEVEL="3")


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _dask_cluster(folder: str):
    info = os.path.join(folder, "scheduler.json")
    quiet = dict(env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", "0", "--no-dashboard", "--scheduler-file", info], **quiet)]
    while not os.path.exists(info):
        time.sleep(0.1)
    for _ in range(2):
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file", info,
                                       "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"], **quiet))
    from distributed import Client
    with Client(scheduler_file=info, timeout="60s") as client:
        client.wait_for_workers(2, timeout=60)
        return client.scheduler.address, procs


def _train(store: str, out: str, epochs: int, workers: int) -> None:
    argv = [sys.executable, "-m", "trainer", "run", store, "--out", out, "--epochs", str(epochs), "--quiet"]
    if workers == 1:
        subprocess.run(argv, env=_env(), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return
    hosts = [f"127.0.0.1:{p}" for p in free_ports(workers)]
    procs = [subprocess.Popen(argv[:6] + [f"{out}-{i}"] + argv[7:], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL,
                              env=_env() | {"TF_CONFIG": json.dumps({"cluster": {"worker": hosts},
                                                                     "task": {"type": "worker", "index": i}})})
             for i in range(workers)]
    for proc in procs:
        if proc.wait() != 0:
            raise RuntimeError("a training worker failed")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench_scale", description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=300_000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    require("distributed")

    from ingest import IngestConfig, ingest
    from tools.synth import write_csv

    with tempfile.TemporaryDirectory() as tmp:
        csv_path = str(write_csv(os.path.join(tmp, "quest.csv"), args.rows, seed=1))
        mb = os.path.getsize(csv_path) / 1e6
        address, procs = _dask_cluster(tmp)
        try:
            runs = {"ingest, 2 local processes": [], "ingest --dask (2 workers)": []}
            for r in range(args.repeat):
                options = dict(label="clear", val_fraction=0.1, progress=False, overwrite=True)
                runs["ingest, 2 local processes"].append(_timed(lambda: ingest(IngestConfig(
                    [csv_path], os.path.join(tmp, "local.zarr"), workers=2, **options))))
                runs["ingest --dask (2 workers)"].append(_timed(lambda: ingest(IngestConfig(
                    [csv_path], os.path.join(tmp, "dask.zarr"), dask=address, **options))))
        finally:
            for proc in reversed(procs):
                proc.kill()
        store = os.path.join(tmp, "local.zarr")
        for workers in (1, 2):
            label = "trainer run, 1 process" if workers == 1 else "trainer run, 2 workers (MultiWorkerMirrored)"
            runs[label] = [_timed(lambda: _train(store, os.path.join(tmp, f"run{workers}-{r}"), args.epochs,
                                                 workers)) for r in range(args.repeat)]
    print(f"# scale-out paths on one machine, {args.rows:,} rows, median of {args.repeat}\n\nmachine: {machine()}\n")
    print("| run | seconds | vs baseline |\n|---|---:|---:|")
    base = {"ingest": median(runs["ingest, 2 local processes"]), "trainer": median(runs["trainer run, 1 process"])}
    for name, times in runs.items():
        kind = name.split(",")[0].split(" ")[0]
        print(f"| {name} | {median(times):.1f} | {median(times) / base[kind]:.2f}x |")
    print(f"\ntraining: {args.epochs} epochs of the default MLP, batch 1000, including process start-up; "
          f"CSV {mb:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
