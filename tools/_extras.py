"""The optional packages the tools need, and one line naming the extra that installs them when one is missing.

A plain ``pip install .`` installs what ingest and trainer need; the benchmarks also need the ``bench`` extra
(``psutil`` for peak RSS, ``pyarrow`` for the CSV baseline, moto/s3fs for the remote read path, Dask for the
cluster case). Each tool checks its own needs before it starts (before it writes a million-row CSV), so a missing
package is one line on stderr and exit status 2, not a traceback halfway through.
"""

from __future__ import annotations

import importlib.util
import os
import sys

__all__ = ["require", "BENCH_EXTRA"]

BENCH_EXTRA = "pip install '.[bench]'"


def require(*modules: str, extra: str = BENCH_EXTRA) -> None:
    """Exit with one line (status 2) naming ``extra`` when any of ``modules`` cannot be imported."""
    missing = [m for m in modules if not _importable(m)]
    if missing:
        print(f"{_tool()}: error: {', '.join(missing)} not installed; this tool needs the bench extra: {extra}",
              file=sys.stderr)
        raise SystemExit(2)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a half-installed module
        return False


def _tool() -> str:
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return f"python -m {spec.name}" if spec is not None else os.path.basename(sys.argv[0] or "tools")
