"""Progress of per-record work, one helper for every stage.

A stage opens one bar for its whole run and its inner per-record loop ticks it::

    with progress.track("features", total=len(ids)):
        ...                      # deep inside, once per record:
        progress.tick()

On a terminal (stderr is a TTY) the bar is drawn by rich with count, percent, rate and ETA; elsewhere (a log
file, CI, a pipe) a plain line goes to stderr every 5 % (at most one per 5 s) and at least every minute, so a 30,000-record
stage is never silent for long yet a log does not fill with bars. Stdout stays free for the commands' own
output (``--json``).

``tick`` advances the innermost bar opened in the current context and does nothing when none is open, so the
chunk-level functions a Prefect task calls (``measure_shard``, ``render_ids``, ...) tick harmlessly.

Verbosity comes from ``$ECG_GROUNDING_VERBOSITY`` (the CLI's global ``-q`` / ``-v`` set it): -1 quiet (no
progress), 0 default, 1 verbose (plain lines every 1 % / 1 s / 10 s instead of 5 % / 5 s / 60 s).
"""
from __future__ import annotations

import contextvars
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

VERBOSITY_ENV = "ECG_GROUNDING_VERBOSITY"

# plain-line cadence per verbosity: (percent step, fewest seconds between two lines, a heartbeat line at
# least this often). A stage that finishes within the spacing prints only its final line.
_LINE_CADENCE = {0: (5.0, 5.0, 60.0), 1: (1.0, 1.0, 10.0)}

_stack: contextvars.ContextVar[tuple[Progress, ...]] = contextvars.ContextVar("ecg_grounding_progress", default=())


def verbosity() -> int:
    """-1 quiet, 0 default, 1 verbose, from ``$ECG_GROUNDING_VERBOSITY`` (unset or unreadable: 0)."""
    try:
        v = int(os.environ.get(VERBOSITY_ENV, "0").strip() or 0)
    except ValueError:
        return 0
    return max(-1, min(1, v))


def _fmt_s(seconds: float) -> str:
    if seconds < 9.95:
        return f"{max(0.0, seconds):.1f} s"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    m, s = divmod(seconds, 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


class Progress:
    """One stage's counter. Draws itself with rich on a terminal, as plain lines elsewhere, or not at all."""

    def __init__(self, stage: str, total: int | None, unit: str = "records", *, stream: TextIO | None = None,
                 mode: str | None = None, level: int | None = None):
        self.stage, self.unit = stage, unit
        self.total = None if total is None else max(0, int(total))
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.level = verbosity() if level is None else level
        if mode is None:
            mode = "off" if self.level < 0 else ("bar" if _isatty(self.stream) else "lines")
        self.mode = mode
        self.started = time.perf_counter()
        self._step_pct, self._min_gap_s, self._heartbeat_s = _LINE_CADENCE[max(0, self.level)]
        self._next_pct = self._step_pct
        self._last_line = self.started
        self._bar = None
        if self.mode == "bar":
            self._bar = _RichBar(self)

    # -- counting ------------------------------------------------------------------------------------------
    def add_total(self, n: int) -> None:
        """More work appeared (e.g. a regeneration round of the LLM stage)."""
        self.total = (self.total or 0) + int(n)
        if self._bar is not None:
            self._bar.update()

    def advance(self, n: int = 1) -> None:
        self.done += int(n)
        if self._bar is not None:
            self._bar.update()
        elif self.mode == "lines":
            self._maybe_line()

    def rate(self) -> float:
        dt = time.perf_counter() - self.started
        return self.done / dt if dt > 0 else 0.0

    def eta_s(self) -> float | None:
        r = self.rate()
        if self.total is None or r <= 0:
            return None
        return max(0.0, (self.total - self.done) / r)

    # -- plain lines ---------------------------------------------------------------------------------------
    def line(self, final: bool = False) -> str:
        """'features: 40/200 records (20%), 12.3 records/s, ETA 13 s' (the final line gives the elapsed time)."""
        elapsed = time.perf_counter() - self.started
        count = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
        pct = f" ({100.0 * self.done / self.total:.0f}%)" if self.total else ""
        rate = f"{self.rate():.1f} {self.unit}/s"
        if final:
            if self.total and self.done < self.total:
                # a resumed stage skips what is stored and a failing record is never ticked: "0/30 (0%)" read as
                # a stage that did nothing wrong, or everything wrong; say which count this is
                return (f"{self.stage}: {self.done} of {self.total} {self.unit} processed now in {_fmt_s(elapsed)}"
                        f" (the others were done before or failed)")
            return f"{self.stage}: {count} {self.unit}{pct} in {_fmt_s(elapsed)}, {rate}"
        eta = self.eta_s()
        tail = f", ETA {_fmt_s(eta)}" if eta is not None else ""
        return f"{self.stage}: {count} {self.unit}{pct}, {rate}{tail}"

    def _maybe_line(self) -> None:
        now = time.perf_counter()
        gap = now - self._last_line
        due = gap >= self._heartbeat_s
        if self.total:
            pct = 100.0 * self.done / self.total
            if pct >= self._next_pct and gap >= self._min_gap_s:
                due = True
                while self._next_pct <= pct:
                    self._next_pct += self._step_pct
        if due and (self.total is None or self.done < self.total):
            self._emit(self.line())
            self._last_line = now

    def _emit(self, text: str) -> None:
        try:
            print(text, file=self.stream, flush=True)
        except (OSError, ValueError):  # a closed or broken stream must never fail the stage
            pass

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.mode == "lines" and (self.done or self.total):
            self._emit(self.line(final=True))


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class _RichBar:
    """The terminal bar. All open bars share one rich Progress (one live display per process); a finished
    stage's bar stays on screen as a record of what ran."""

    _live = None          # the shared rich.progress.Progress
    _open = 0

    def __init__(self, p: Progress):
        from rich.console import Console
        from rich.progress import (
            BarColumn, MofNCompleteColumn, Progress as RichProgress, TaskProgressColumn, TextColumn,
            TimeElapsedColumn, TimeRemainingColumn,
        )

        self.p = p
        if _RichBar._live is None:
            _RichBar._live = RichProgress(
                TextColumn("[bold]{task.description:>9}"), BarColumn(), MofNCompleteColumn(),
                TaskProgressColumn(), TextColumn("{task.fields[rate]}"), TextColumn("ETA"), TimeRemainingColumn(),
                TextColumn("elapsed"), TimeElapsedColumn(),
                console=Console(file=p.stream), refresh_per_second=4)
            _RichBar._live.start()
        _RichBar._open += 1
        self.task = _RichBar._live.add_task(p.stage, total=p.total, rate="")

    def update(self) -> None:
        p = self.p
        _RichBar._live.update(self.task, completed=p.done, total=p.total, rate=f"{p.rate():.1f} {p.unit}/s")

    def close(self) -> None:
        self.update()
        _RichBar._open -= 1
        if _RichBar._open == 0:
            _RichBar._live.stop()
            _RichBar._live = None


@contextmanager
def track(stage: str, total: int | None, unit: str = "records", **options) -> Iterator[Progress]:
    """Open a bar for ``stage`` (``total`` items, None when unknown); ``tick()`` inside advances it.

    Re-entrant: inside an open bar of the same stage (the chain opens one per stage around its chunks, and
    a chunk's own function opens ``stage`` again) the open bar is reused, so a stage shows one bar however it
    is chunked."""
    outer = current()
    if outer is not None and outer.stage == stage:
        yield outer
        return
    p = Progress(stage, total, unit, **options)
    token = _stack.set(_stack.get() + (p,))
    try:
        yield p
    finally:
        _stack.reset(token)
        p.close()


def current() -> Progress | None:
    """The innermost open bar of this context, if any."""
    stack = _stack.get()
    return stack[-1] if stack else None


def tick(n: int = 1) -> None:
    """Advance the innermost open bar by ``n`` (no-op when no bar is open, e.g. inside a Prefect task)."""
    p = current()
    if p is not None:
        p.advance(n)


def iterate(stage: str, items, total: int | None = None, unit: str = "records", weight=None):
    """``for x in iterate("synth", range(n))``: a bar over a loop that is the whole stage. ``weight(x)`` is how
    far one item advances the bar (default 1; 0 when the loop's body ticks per record itself)."""
    if total is None:
        try:
            total = len(items)
        except TypeError:
            total = None
    with track(stage, total, unit) as p:
        for item in items:
            yield item
            step = 1 if weight is None else weight(item)
            if step:
                p.advance(step)


def add_total(n: int) -> None:
    """Grow the innermost open bar's total by ``n`` (no-op when none is open)."""
    p = current()
    if p is not None:
        p.add_total(n)


def parquet_rows(*candidates) -> int | None:
    """Rows of the first candidate that exists: a Parquet file, or a folder of ``*.parquet`` parts (a bar's
    total, read from the files' metadata; None when none exists or a file cannot be read)."""
    from pathlib import Path

    import polars as pl

    for c in candidates:
        c = Path(c)
        files = [c] if c.is_file() else sorted(c.glob("*.parquet")) if c.is_dir() else []
        if files:
            try:
                return sum(pl.scan_parquet(f).select(pl.len()).collect().item() for f in files)
            except Exception:  # noqa: BLE001 - only a progress total; the stage reports the real error
                return None
    return None
