"""ingest.allocator: the worker processes' glibc settings (in a subprocess: the test process's allocator is not
ours to change)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from tests.helpers import subprocess_env

SCRIPT = """
import ctypes, sys
from ingest.allocator import keep_buffers
ok = keep_buffers()
# a buffer freed and allocated again comes from the heap now (below the raised mmap threshold): the same address
a = ctypes.create_string_buffer(16 * 2**20); first = ctypes.addressof(a); del a
b = ctypes.create_string_buffer(16 * 2**20)
print(ok, ctypes.addressof(b) == first)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_keep_buffers_raises_the_thresholds_on_glibc():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=subprocess_env(),
                         check=True).stdout.split()
    assert out == ["True", "True"]
