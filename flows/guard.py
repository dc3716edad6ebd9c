"""No orphan keeps writing into a run folder.

A Prefect runner (``serve``, a process worker) starts each flow run as a child process; the flow run starts
its Dask workers as its own children. When a parent is killed with SIGKILL nothing tells the children: today
a ``kill -9`` of ``serve`` leaves its flow run rendering into the run folder, its state RUNNING forever.

``exit_with_parent`` makes a process watch its parent: once the parent is gone (the process was re-parented),
it reports what happened (``on_orphan``: the flow run marks itself Crashed), kills its own descendants
(the Dask workers) and exits. The run folder's ``run.lock`` stays behind, so the next run of the same folder
says where the dead one stopped and resumes from its finished chunks.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

ENV = "ECG_GROUNDING_EXIT_WITH_PARENT"   # "1": processes of this run watch their parent (inherited by workers)
ORPHAN_EXIT_CODE = 70
_lock = threading.Lock()
_watching: int | None = None             # the pid whose watch thread runs (a forked child must start anew)


def kill_descendants(sig: int = signal.SIGKILL) -> int:
    """Send ``sig`` to every descendant of this process; returns how many were signalled."""
    import psutil

    n = 0
    for child in psutil.Process().children(recursive=True):
        try:
            child.send_signal(sig)
            n += 1
        except psutil.Error:
            pass
    return n


def exit_with_parent(on_orphan: Callable[[], None] | None = None, interval_s: float = 0.5) -> bool:
    """Start (once per process) a daemon thread that ends this process and its descendants when its parent
    dies. ``on_orphan`` runs first (best effort, 10 s at most). Returns False when already watching."""
    global _watching
    with _lock:
        if _watching == os.getpid():
            return False
        _watching = os.getpid()
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval_s)
        log.error("parent process %d is gone: stopping this process (%d) and its workers", parent, os.getpid())
        if on_orphan is not None:
            done = threading.Event()

            def report() -> None:
                try:
                    on_orphan()
                except Exception as exc:  # noqa: BLE001 - reporting must never keep an orphan alive
                    log.error("could not report the orphaned run: %s", exc)
                finally:
                    done.set()

            threading.Thread(target=report, daemon=True).start()
            done.wait(10.0)
        kill_descendants()
        os._exit(ORPHAN_EXIT_CODE)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
    return True


def guard_worker() -> None:
    """Called by every chunk task: a Dask worker process of a local cluster (``ENV`` inherited from the flow
    run that started it) ends when that flow-run process dies."""
    if os.environ.get(ENV) == "1":
        exit_with_parent()
