"""Runs ``ecg-grounding`` command lines one after another in one interpreter, for the bad-input corpus.

``python tests/cli_worker.py JOBS.json RESULTS.json``: JOBS is a list of {argv, env}; each command line goes
through ``pipeline.cli.main`` (the console script's entry point) with its environment applied, stdout and
stderr captured, the exit code taken from its return value or ``SystemExit`` (argparse), and everything it set
(environment, logging handlers) undone before the next. An exception escaping ``main`` is printed as Python
would print it (a traceback on stderr, exit code 1), which is exactly what the corpus forbids.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import traceback


def run_one(argv: list[str], env: dict[str, str | None]) -> dict:
    from pipeline.cli import main

    saved_env = dict(os.environ)
    for k, v in (env or {}).items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = str(v)
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    root.handlers = []
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(list(argv))
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if not isinstance(exc.code, (int, type(None))):
                print(exc.code, file=sys.stderr)
        except BaseException:  # noqa: BLE001 - shown as the interpreter would show it
            traceback.print_exc()
            rc = 1
    root.handlers, root.level = saved_handlers, saved_level
    os.environ.clear()
    os.environ.update(saved_env)
    return {"returncode": int(rc or 0), "stdout": out.getvalue(), "stderr": err.getvalue()}


if __name__ == "__main__":
    jobs = json.loads(open(sys.argv[1]).read())
    results = [run_one(j["argv"], j.get("env") or {}) for j in jobs]
    with open(sys.argv[2], "w") as fh:
        json.dump(results, fh)
