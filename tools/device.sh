#!/usr/bin/env bash
# The checks that need the lent 16-core GPU machine (an H100/H200 with JAX, PyTorch, numpy and pandas but no
# TensorFlow and no package registry), as one prepared command:
#
#   bash tools/device.sh prepare     # here: download what that machine lacks into .device/wheels (Python 3.12)
#   bash tools/device.sh selftest    # here: the same run on tiny data, in a Python 3.12 venv like the device's
#   # then, once, through the device tool: run `bash tools/device.sh run` with carry [".device/wheels"] (not
#   # all of .device: the selftest's venv there is far over the 64 MiB a call may carry), timeout 600:
#   #   issue 10: python -m tools.bench_gpu (feed vs in-RAM, batch 1000 and 4000, JAX)      -> $OUT/gpu.md
#   #   issue 12: python -m tools.bench_ingest --files 16 ... --workers 1,2,4,8,16           -> $OUT/ingest.md
#
# .device/ is git-ignored; the wheels are ~15 MB, under the device tool's 64 MiB carry limit.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=.device/wheels
# What the device's Python lacks (it has numpy, pandas, jax, h5py, ml-dtypes, rich): the project's own needs for
# ingest and the JAX feed, with their pure-Python dependencies; the versions CI tests (setup.cfg: zarr < 3.2).
CARRY="keras==3.15.1 zarr==3.1.6 numcodecs==0.16.6 google-crc32c crc32c donfig optree namex absl-py markdown-it-py
       mdurl pygments typing-extensions packaging pyyaml tqdm psutil setuptools"
INSTALL="keras zarr numcodecs google-crc32c tqdm psutil"

case "${1:-}" in
prepare)
    mkdir -p "$WHEELS"
    python3 -m pip download -q --dest "$WHEELS" --python-version 3.12 --only-binary=:all: --no-deps \
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 $CARRY
    du -sh "$WHEELS"
    ;;
run)
    OUT=${OUT:-.device/out}
    mkdir -p "$OUT"
    PY=${DEVICE_PYTHON:-python3}
    if "$PY" -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)'; then
        VPY=$PY  # already a virtual environment (the selftest's): install into it
    else
        "$PY" -m venv --system-site-packages .device/venv  # sees the device's numpy, pandas, jax
        VPY=.device/venv/bin/python
    fi
    "$VPY" -m pip install -q --no-index --find-links "$WHEELS" $INSTALL
    # ingest's compiled parser, where the machine has a C compiler and Python's headers (else pandas parses: the
    # line in machine.txt says which)
    "$VPY" -m pip install -q --no-index --find-links "$WHEELS" setuptools || true
    "$VPY" setup.py -q build_ext --inplace > "$OUT/build.txt" 2>&1 || echo "build_ext failed: see build.txt"
    export KERAS_BACKEND=jax PYTHONPATH=. PYTHONUNBUFFERED=1
    { nproc; free -g | head -2; nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null || true
      "$VPY" -c 'import ingest.parse as p; print("compiled parser:", p._fastcsv is not None)'; } > "$OUT/machine.txt"
    data=${DEVICE_DATA:-/tmp/device-bench}
    if [ -n "${QUICK:-}" ]; then
        gpu_args=(--cpu) ingest_args=(--files 2 --quick --workers 1,2)
    else
        gpu_args=() ingest_args=(--files 16 --rows 2000000 --workers 1,2,4,8,16 --repeat 3)
    fi
    # ingest first: it needs no accelerator, and its table is what issue 12 still lacks
    timeout 240 "$VPY" -m tools.bench_ingest "${ingest_args[@]}" --data "$data" 2>&1 \
        | tee "$OUT/ingest.md" || echo "bench_ingest failed or ran out of time" | tee -a "$OUT/ingest.md"
    timeout 300 "$VPY" -m tools.bench_gpu "${gpu_args[@]}" 2>&1 | tee "$OUT/gpu.md" \
        || echo "bench_gpu failed or ran out of time" | tee -a "$OUT/gpu.md"
    ;;
selftest)
    # A Python 3.12 venv with what the device has preinstalled (from the registry here), then the carried wheels
    # installed as there (no index), then the run on tiny data.
    [ -d "$WHEELS" ] || bash "$0" prepare
    base=.device/py312
    PY312=${PY312:-python3.12}
    rm -rf "$base" .device/venv .device/selftest
    "$PY312" -m venv "$base"
    "$base/bin/python" -m pip install -q numpy pandas "jax[cpu]" h5py ml-dtypes rich
    QUICK=1 OUT=.device/selftest DEVICE_PYTHON="$base/bin/python" DEVICE_DATA=.device/data bash "$0" run
    grep -q "ingest --workers 2" .device/selftest/ingest.md
    grep -q "in-RAM" .device/selftest/gpu.md
    echo "selftest passed: .device/selftest/{ingest,gpu}.md"
    ;;
*)
    echo "usage: bash tools/device.sh prepare|selftest|run" >&2
    exit 2
    ;;
esac
