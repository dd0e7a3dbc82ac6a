"""Describe a store, and with ``--verify`` read every chunk, check every checksum and the row accounting.

    python -m tools.inspect quest.zarr
    python -m tools.inspect quest.zarr --verify        # exit 1 naming each bad array and chunk
    python -m tools.inspect quest.zarr --json
    python -m tools.inspect s3://bucket/quest.zarr --verify   # any fsspec URL
"""

from __future__ import annotations

import argparse
import json
import sys

from tqdm import tqdm

from store import ChunkError, StoreError, open_store, size_of

__all__ = ["describe", "verify", "main"]


def describe(path: str) -> dict:
    """Everything worth knowing about a store, as plain JSON-able data."""
    store = open_store(path)
    attrs, info = store.attrs, store.attrs.get("ingest", {})
    source_bytes = sum(s.get("bytes", 0) for s in info.get("sources", []))
    disk = size_of(path)
    arrays = {}
    for split in store.splits:
        for name, cols in store.schema.arrays.items():
            reader = store.chunk_reader(split, name)
            arrays[f"{split}/{name}"] = {"shape": [store.rows[split], len(cols)],
                                         "dtype": str(store.schema.array_dtype(name)), "chunks": reader.chunks,
                                         "shards": -(-reader.chunks // store.chunks_per_shard)}
    columns = []
    for col in store.schema.columns:
        entry = {"name": col.name, "kind": col.kind, "array": col.array, "index": col.index,
                 "statistics": {s: store.statistics.get(s, {}).get(col.name) for s in store.splits}}
        if col.vocabulary is not None:
            entry["vocabulary_size"] = len(col.vocabulary)
        if col.hash_buckets is not None:
            entry["hash_buckets"] = col.hash_buckets
        columns.append(entry)
    return {
        "path": path, "format": attrs["format"], "version": attrs["version"], "complete": attrs["complete"],
        "label": store.label, "rows": store.rows, "batch_size": store.batch_size,
        "chunks_per_shard": store.chunks_per_shard, "compression": store.compression, "arrays": arrays,
        "columns": columns, "bytes_on_disk": disk, "source_bytes": source_bytes,
        "size_vs_source": disk / source_bytes if source_bytes else None,
        "ingest": {k: info.get(k) for k in ("sources", "options", "rows_read", "rows_stored", "rows_rejected",
                                            "rejects", "timings")},
    }


def verify(path: str) -> list[str]:
    """Problems found reading every chunk of every array and checking the row accounting (empty: all good)."""
    store = open_store(path)
    problems = []
    info = store.attrs.get("ingest", {})
    if info.get("rows_read") is not None:  # the three counts come together (checked by open_store)
        read, stored, rejected = info.get("rows_read"), info.get("rows_stored"), info.get("rows_rejected")
        if read != stored + rejected:
            problems.append(f"row accounting: rows read {read} != rows stored {stored} + rejected {rejected}")
        if stored != sum(store.rows.values()):
            problems.append(f"row accounting: {stored} rows stored but the splits hold {sum(store.rows.values())}")
    arrays = [(split, name) for split in store.splits for name in store.schema.arrays]
    chunks = sum(-(-store.rows[split] // store.attrs["batch_size"]) for split, _ in arrays)
    # each array's zarr.json (shape, chunks, codecs) was checked by open_store; a bar on a terminal only
    with tqdm(total=chunks, desc="verify", unit=" chunks", disable=None, dynamic_ncols=True, mininterval=0.2) as bar:
        for split, name in arrays:
            reader = store.chunk_reader(split, name)
            for k in range(reader.chunks):
                try:
                    reader.chunk(k)
                except ChunkError as exc:
                    problems.append(str(exc))
                bar.update(1)
            reader.close()
    return list(dict.fromkeys(problems))  # a damaged shard fails each of its chunks alike: say it once


def _text(d: dict) -> str:
    info = d["ingest"]
    lines = [f"store: {d['path']}  ({d['format']} v{d['version']}, {'complete' if d['complete'] else 'INCOMPLETE'})",
             "rows: " + ", ".join(f"{k} {v:,}" for k, v in d["rows"].items())
             + (f"  (read {info['rows_read']:,} = stored {info['rows_stored']:,} + rejected "
                f"{info['rows_rejected']:,})" if info.get("rows_read") is not None else ""),
             f"label: {d['label']}",
             f"layout: {d['batch_size']} rows per chunk (= batch), {d['chunks_per_shard']} chunks per shard, "
             f"{d['compression']} compression, {d['bytes_on_disk'] / 1e6:,.1f} MB on disk"
             + (f" = {d['size_vs_source']:.2f} x the source CSV" if d["size_vs_source"] else "")]
    for name, a in d["arrays"].items():
        lines.append(f"  {name:<24} {a['dtype']:<6} {a['shape'][0]:>12,} x {a['shape'][1]:<3} "
                     f"{a['chunks']:,} chunks in {a['shards']:,} shards")
    if info.get("sources"):
        opts = info.get("options") or {}
        lines.append(f"made by: ingest of {len(info['sources'])} file(s), seed {opts.get('seed')}, "
                     f"{'shuffled' if opts.get('shuffle') else 'source order'}, bad rows: {opts.get('on_bad_rows')}"
                     + (f", rejects in {info['rejects']}" if info.get("rejects") else ""))
        for src in info["sources"][:10]:
            lines.append(f"  {src['split']:<10} {src['bytes'] / 1e6:>10,.1f} MB  {src['path']}")
        if len(info["sources"]) > 10:
            lines.append(f"  ... and {len(info['sources']) - 10} more")
    if info.get("timings"):  # validated when the store was opened: stage -> {"wall", "cpu"}
        lines.append("ingest stages (wall / CPU s): " + ", ".join(
            f"{stage} {t['wall']:.2f} / {t['cpu']:.2f}" for stage, t in info["timings"].items()))
    lines.append(f"{'column':<20} {'kind':<9} {'array[i]':<15} {'missing':>9} {'mean':>12} {'std':>12} "
                 f"{'min':>14} {'max':>14} vocab")
    for c in d["columns"]:
        st = c["statistics"].get("train") or {}
        lines.append(f"{c['name'][:20]:<20} {c['kind']:<9} {c['array'] + '[' + str(c['index']) + ']':<15} "
                     f"{st.get('missing', ''):>9} {_num(st.get('mean')):>12} {_num(st.get('std')):>12} "
                     f"{_num(st.get('min')):>14} {_num(st.get('max')):>14} {_vocab(c)}")
    return "\n".join(lines)


def _vocab(column: dict) -> str:
    if "hash_buckets" in column:
        return f"hashed into {column['hash_buckets']:,}"
    return f"{column['vocabulary_size']:,}" if "vocabulary_size" in column else ""


def _num(x) -> str:
    if x is None:
        return ""
    if isinstance(x, int):
        return f"{x:,}" if abs(x) < 10**12 else f"{x:.4g}"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.inspect", description=__doc__.splitlines()[0])
    parser.add_argument("store", metavar="STORE")
    parser.add_argument("--verify", action="store_true", help="read every chunk; exit 1 naming each problem")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args(argv)
    try:
        d = describe(args.store)
        problems = verify(args.store) if args.verify else None
    except StoreError as exc:
        print(f"inspect: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(d | ({"problems": problems} if problems is not None else {}), indent=2,
                         ensure_ascii=False, default=str))
    else:
        print(_text(d))
        if problems is not None:
            print("verify: OK, every chunk read and checked" if not problems else
                  f"verify: {len(problems)} problem(s)")
    for problem in problems or []:
        print(f"inspect: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
