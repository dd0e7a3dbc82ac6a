"""Remote read path: time per 1000-row batch from an S3-compatible server, with and without added latency.

    python -m tools.bench_remote [--rows 200000] [--latency-ms 0 20] [--repeat 3]

Starts moto's S3 server in its own process on 127.0.0.1 and, per latency, a TCP proxy (also its own process) that
holds every request back by that many milliseconds (S3's time to first byte is typically 10-50 ms). Ingests
synthetic quest rows to ``s3://bench/quest.zarr`` and measures, per batch (medians of ``--repeat`` passes over
the same windows):

- fast path: ``BatchSource.load_window`` — one concurrent ``cat_ranges`` call for a window's 16 chunks x arrays;
- one GET at a time: the same chunks read with ``ArrayReader.chunk`` one after another;
- zarr-python: ``zarr.open_array(url)[rows]`` per chunk of the window (its own async store);
- the local store (lz4) as the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from tools._extras import require
from tools.measure import free_ports


def _wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


# -- the delaying proxy (run as its own process: python -m tools.bench_remote --proxy LISTEN TARGET MS) ------------

async def _pipe(reader, writer, delay: float) -> None:
    try:
        while data := await reader.read(65536):
            if delay:
                await asyncio.sleep(delay)
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def _proxy(listen: int, target: int, delay: float) -> None:
    async def handle(client_r, client_w):
        server_r, server_w = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(_pipe(client_r, server_w, delay), _pipe(server_r, client_w, 0),
                             return_exceptions=True)

    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    async with server:
        await server.serve_forever()


# -- measurement -------------------------------------------------------------------------------------------------

def _per_batch(fn, batches: int, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) / batches)
    return statistics.median(times)


def measure(url: str, local: str, windows: int, repeat: int) -> dict:
    import zarr

    from store import open_store
    from trainer.batches import BatchSource

    results = {}
    for name, path in (("local lz4 (floor)", local), ("fast path (concurrent)", url)):
        source = BatchSource(path, "train", seed=0)
        batches = sum(len(source.window_chunks(0, w)) for w in range(windows)) // source.per_batch
        results[name] = _per_batch(lambda: [source.load_window(0, w) for w in range(windows)], batches, repeat)
    source = BatchSource(url, "train", seed=0)
    chunks = [int(k) for w in range(windows) for k in source.window_chunks(0, w)]

    def one_at_a_time():
        for k in chunks:
            for reader in source.readers.values():
                reader.chunk(k)

    results["one GET at a time"] = _per_batch(one_at_a_time, len(chunks), repeat)
    store = open_store(url)
    arrays = [zarr.open_array(f"{url}/train/{a}", mode="r") for a in source.readers]
    rows = store.batch_size

    def zarr_python():
        for k in chunks[:32]:
            for array in arrays:
                array[k * rows:(k + 1) * rows]

    results["zarr-python"] = _per_batch(zarr_python, min(32, len(chunks)), repeat)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench_remote", description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--latency-ms", type=float, nargs="+", default=[0, 20])
    p.add_argument("--windows", type=int, default=4, help="16-chunk windows measured per pass")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--proxy", nargs=3, metavar=("LISTEN", "TARGET", "MS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.proxy:
        listen, target, ms = args.proxy
        asyncio.run(_proxy(int(listen), int(target), float(ms) / 1000))
        return 0
    require("moto", "flask", "fsspec", "s3fs")

    from ingest import IngestConfig, ingest
    from tools.measure import machine
    from tools.synth import write_csv

    procs = []
    s3_port = free_ports(1)[0]
    procs.append(subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        _wait_port(s3_port)
        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                          AWS_ENDPOINT_URL=f"http://127.0.0.1:{s3_port}")
        import fsspec
        fsspec.filesystem("s3", skip_instance_cache=True).mkdir("bench")
        with tempfile.TemporaryDirectory() as tmp:
            csv_path = write_csv(os.path.join(tmp, "quest.csv"), args.rows, seed=1)
            local = os.path.join(tmp, "quest.zarr")
            options = dict(label="clear", workers=2, progress=False)
            ingest(IngestConfig([str(csv_path)], local, **options))
            ingest(IngestConfig([str(csv_path)], "s3://bench/quest.zarr", work=os.path.join(tmp, "work"), **options))
            print(f"# remote read path, per 1000-row batch (5 arrays), median of {args.repeat}\n\nmachine: {machine()}; "
                  f"S3: moto server in its own process; latency added per request by a proxy\n")
            print("| reader | " + " | ".join(f"{ms:g} ms latency" for ms in args.latency_ms) + " |")
            print("|---|" + "---:|" * len(args.latency_ms))
            table: dict[str, list[str]] = {}
            for ms in args.latency_ms:
                port = free_ports(1)[0]
                procs.append(subprocess.Popen([sys.executable, "-m", "tools.bench_remote", "--proxy", str(port),
                                               str(s3_port), str(ms)]))
                _wait_port(port)
                os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{port}"
                fsspec.filesystem("s3").clear_instance_cache()  # cached instances keep the endpoint they began with
                for name, seconds in measure("s3://bench/quest.zarr", local, args.windows, args.repeat).items():
                    table.setdefault(name, []).append(f"{seconds * 1e3:.2f} ms")
            for name, cells in table.items():
                print(f"| {name} | " + " | ".join(cells) + " |")
    finally:
        for proc in procs:
            proc.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
