"""CSV -> store, once: ``ingest(IngestConfig(...))`` or the ``ingest`` command (see ``ingest --help``)."""

from .config import IngestConfig
from .pipeline import IngestResult, ingest

__all__ = ["ingest", "IngestConfig", "IngestResult"]
