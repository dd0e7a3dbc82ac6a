"""Where ``trainer predict`` writes: a CSV file or a Zarr array, filled a window of batches at a time in store order,
so memory stays bounded whatever the split's size (the whole split's outputs are never held at once)."""

from __future__ import annotations

import os
import shutil

import numpy as np

from store import OptionError, publish, temporary_name

__all__ = ["PredictionsWriter", "MARK"]

MARK = "quest_predictions"  # attribute of a predictions array this tool wrote (the only kind it replaces)
_ZARR_ROWS = 65536  # rows per chunk of a predictions array


class PredictionsWriter:
    """Appends predictions (``[rows, outputs]`` float32) to ``out``: a CSV with a ``row`` column (the row's
    position in the split) and one column per name, or, when ``out`` ends in ``.zarr``, an array
    ``[rows, outputs]`` of ``total`` rows. Either is written under a temporary name and appears under its own only
    once complete (an earlier predictions array there is replaced then), so an interrupted run never leaves
    predictions that look complete."""

    def __init__(self, out: str, names: list[str], total: int):
        self.out, self.names, self.total = out, names, total
        self.written = 0
        self._pending: list[np.ndarray] = []  # Zarr: rows not yet making a whole chunk
        self._pending_rows = self._flushed = 0
        self._tmp, self._old = temporary_name(out), f"{out}.old-predict-{os.getpid()}"
        for path in (self._tmp, self._old):  # names this writer creates and deletes: never a user's file
            if os.path.lexists(path):
                raise OptionError(f"{path} exists and was not made by this trainer predict; it will not be "
                                  "replaced: move it away and run again", path=path)
        if out.endswith(".zarr"):
            import zarr
            self._array = zarr.create_array(self._tmp, shape=(total, len(names)), dtype="float32",
                                            chunks=(_ZARR_ROWS, len(names)), dimension_names=["row", "output"],
                                            attributes={"columns": names, MARK: True}, overwrite=True)
            self._file = None
        else:
            self._array = None
            self._file = open(self._tmp, "w", encoding="utf-8", newline="")
            self._csv(np.zeros((0, len(names)), np.float32), header=True)

    def write(self, values: np.ndarray) -> None:
        values = np.asarray(values, np.float32).reshape(len(values), len(self.names))
        if self._array is None:
            self._csv(values, header=False)
        else:
            self._pending.append(values)
            self._pending_rows += len(values)
            if self._pending_rows >= _ZARR_ROWS:
                self._flush(whole_chunks=True)
        self.written += len(values)

    def close(self) -> str:
        """Finish the output (every row must have been written); returns its path."""
        if self.written != self.total:
            raise RuntimeError(f"predictions: {self.written} rows written, the split has {self.total}")
        if self._array is None:
            self._file.close()
            publish(self._tmp, self.out)
            return self.out
        self._flush(whole_chunks=False)
        replacing = os.path.exists(self.out)  # an earlier predictions array (trainer.run checked it is ours)
        if replacing:
            os.replace(self.out, self._old)
        publish(self._tmp, self.out)
        if replacing:
            shutil.rmtree(self._old, ignore_errors=True)
        return self.out

    def abort(self) -> None:
        """Remove what was written (nothing under ``out`` is touched)."""
        if self._file is not None and not self._file.closed:
            self._file.close()
        if os.path.isdir(self._tmp):
            shutil.rmtree(self._tmp, ignore_errors=True)
        elif os.path.exists(self._tmp):
            os.remove(self._tmp)

    def _csv(self, values: np.ndarray, header: bool) -> None:
        import pandas as pd
        start = self.written
        frame = pd.DataFrame(values, columns=self.names, index=pd.RangeIndex(start, start + len(values)))
        frame.to_csv(self._file, header=header, index_label="row", float_format="%.7g")

    def _flush(self, whole_chunks: bool) -> None:
        """Write the pending rows to the array, only up to a chunk boundary unless at the end (so every chunk is
        written once, never read back and rewritten)."""
        if not self._pending:
            return
        pending = np.concatenate(self._pending)
        n = len(pending) - len(pending) % _ZARR_ROWS if whole_chunks else len(pending)
        if n:
            self._array[self._flushed:self._flushed + n] = pending[:n]
            self._flushed += n
        rest = pending[n:]
        self._pending, self._pending_rows = ([rest] if len(rest) else []), len(rest)
