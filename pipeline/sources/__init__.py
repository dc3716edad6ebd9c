"""ECG sources: each turns one dataset layout into canonical records (``pipeline.record.ECGRecord``).

A source is opened on a data root and then answers two questions fast:
``ids()`` - every record id it holds, in a stable order; ``read(record_id)`` - that record, or a
``RecordError`` with a reason code. Sources never copy signals: later stages re-open the source and read.

Registered names: ``synthetic`` (the embedded default), ``ptbxl``, ``mimic``, ``ludb``, ``wfdb``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

from pipeline.record import ECGRecord


class Source(Protocol):
    name: str
    root: Path

    def ids(self) -> list[str]:
        """All record ids under ``root`` in a stable order."""

    def read(self, record_id: str) -> ECGRecord:
        """The canonical record; raises ``RecordError`` (never anything else) for a bad record."""


SOURCE_NAMES = ("synthetic", "ptbxl", "mimic", "ludb", "wfdb")


def open_source(name: str, root: str | Path, **options) -> Source:
    """Open source ``name`` on ``root``. ``options`` are source-specific (e.g. ``window_s`` for wfdb)."""
    if name == "ptbxl":
        from pipeline.sources.ptbxl import PtbxlSource as cls
    elif name == "synthetic":
        from pipeline.sources.synthetic import SyntheticSource as cls
    elif name == "mimic":
        from pipeline.sources.mimic import MimicSource as cls
    elif name == "ludb":
        from pipeline.sources.ludb import LudbSource as cls
    elif name == "wfdb":
        from pipeline.sources.wfdb_folder import WfdbFolderSource as cls
    else:
        raise ValueError(f"unknown source {name!r}; choose one of {', '.join(SOURCE_NAMES)}")
    return cls(Path(root), **options)
