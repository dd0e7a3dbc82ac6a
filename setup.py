"""The one compiled piece: ingest's CSV fast path (ingest/_fastcsv.c). Everything else is in setup.cfg.

The extension is optional: without a C compiler the install goes on and ingest parses every block with pandas
(the same values, slower; ``ingest --verbose`` says which parser ran)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("ingest._fastcsv", ["ingest/_fastcsv.c"], optional=True,
                             # no fused multiply-add: every conversion is one IEEE operation, as pandas' is
                             extra_compile_args=["-O2", "-ffp-contract=off"])])
