"""``run.json``: what one run was, so that a run folder explains itself a year later.

Built in one place (``build_run_info``) from the run's resolved configuration and its stage summaries:
- ``config``: every setting of the run as resolved (absolute paths, the synthetic root that was generated,
  the defaults that applied), plus the ``ECG_GROUNDING_*`` environment settings that change results;
- ``software``: this package's version, the git commit (and whether the checkout had uncommitted changes)
  when it runs from a checkout, Python, and the exact version of every installed dependency;
- ``host``: machine name, OS, CPU count;
- ``started_at`` / ``ended_at`` (UTC, ISO 8601), ``duration_s``, ``status`` and ``exit_code``;
- ``stages``: per stage its counts (records in, done, failed, ...) and seconds;
- ``paths`` and the validation ``summary`` (as before, so readers of older run.json files keep working).

Secrets never enter it: no environment variable whose name holds KEY, SECRET, TOKEN or PASSWORD is read.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import platform
import re
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

DIST_NAME = "ecg-grounding"
SCHEMA_VERSION = 2   # 1: the run.json before this module (summary, paths, timings_s only)
_SECRET = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL", re.IGNORECASE)


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def git_info(path: str | Path | None = None) -> dict[str, Any] | None:
    """{commit, branch, dirty} of the git checkout holding ``path`` (default: this package's source), or None
    when the code does not run from a checkout (an installed wheel) or git is missing."""
    where = Path(path) if path else Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
            "dirty": bool(status) if status is not None else None}


def _requirement_names() -> list[str]:
    """Distribution names this package requires, core and every extra (those not installed are skipped)."""
    try:
        reqs = metadata.requires(DIST_NAME) or []
    except metadata.PackageNotFoundError:
        return []
    names = {re.split(r"[\s\[<>=!~;(]", r, maxsplit=1)[0] for r in reqs}
    return sorted(n for n in names if n and n.lower() != DIST_NAME)


def package_versions(names: list[str] | None = None) -> dict[str, str]:
    """{distribution: installed version} for this package's requirements (or ``names``)."""
    out = {}
    for name in names if names is not None else _requirement_names():
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def software_info() -> dict[str, Any]:
    try:
        version = metadata.version(DIST_NAME)
    except metadata.PackageNotFoundError:
        version = None
    return {"package": DIST_NAME, "version": version, "git": git_info(),
            "python": platform.python_version(), "python_implementation": platform.python_implementation(),
            "executable": sys.executable, "packages": package_versions()}


def host_info() -> dict[str, Any]:
    return {"hostname": socket.gethostname(), "platform": platform.platform(), "machine": platform.machine(),
            "cpu_count": os.cpu_count()}


def settings_from_environment() -> dict[str, str]:
    """The ``ECG_GROUNDING_*`` settings in force (e.g. the P-onset fit, the verbosity); never a secret."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith("ECG_GROUNDING_") and not _SECRET.search(k)}


def _plain(value: Any) -> Any:
    """JSON-ready: dataclasses and pydantic models as dicts, paths as absolute strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "model_dump"):
        return _plain(value.model_dump())
    if isinstance(value, Path):
        return str(value.resolve())
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    return value


def resolved_config(config: Any, **resolved: Any) -> dict[str, Any]:
    """The run's settings with paths made absolute; ``resolved`` overrides what was decided at run time (the
    synthetic data root that was generated, a default that depends on the provider, ...)."""
    cfg = _plain(config)
    cfg.update(_plain(resolved))
    secrets = [k for k in cfg if _SECRET.search(k)]
    for k in secrets:  # an API key must never be written, even if a config grows one
        cfg.pop(k)
    cfg["environment"] = settings_from_environment()
    return cfg


def build_run_info(config: Any, started_at: str, ended_at: str, duration_s: float,
                   stages: dict[str, dict[str, Any]], paths: dict[str, Any] | None = None,
                   summary: dict[str, Any] | None = None, exit_code: int | None = None,
                   error: str | None = None, command: list[str] | None = None, records_failed: int | None = None,
                   **resolved: Any) -> dict[str, Any]:
    """The content of ``run.json`` (see the module docstring). ``stages``: stage -> counts and seconds."""
    if error is not None:
        status = "error"
    elif exit_code == 1:
        status = "records_failed"
    else:
        status = "ok"
    info: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "status": status,
        "exit_code": exit_code,
        "records_failed": records_failed,
        "error": error,
        "command": list(command) if command is not None else list(sys.argv),
        "started_at": started_at,
        "ended_at": ended_at,
        "duration_s": round(float(duration_s), 3),
        "config": resolved_config(config, **resolved),
        "software": software_info(),
        "host": host_info(),
        "stages": _plain(stages),
        "paths": {k: str(Path(v).resolve()) if isinstance(v, (str, Path)) else v for k, v in (paths or {}).items()},
        "summary": summary,
    }
    # the keys of the first run.json, kept for its readers
    info["timings_s"] = {k: v.get("seconds") for k, v in stages.items() if isinstance(v, dict)}
    return info


def write_run_info(out_dir: str | Path, info: dict[str, Any]) -> Path:
    """Write ``out_dir/run.json`` atomically (a killed run never leaves half a file)."""
    path = Path(out_dir) / "run.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".run.json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(info, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


def read_run_info(run_dir: str | Path) -> dict[str, Any]:
    """``RUN/run.json`` as a dict ({} when absent)."""
    path = Path(run_dir) / "run.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def failed_record_ids(run_dir: str | Path) -> dict[str, list[str]]:
    """Per stage, the ids of the records that stage dropped (its errors table's severity 'error' rows; for
    generate, prompts whose every attempt failed, was refused for context or was skipped by the cost cap; for
    validate, records that reached it and ended without an accepted answer). A record that failed in ingest usually fails again later, so count the union, not the sum."""
    import polars as pl

    run = Path(run_dir)
    tables = {"ingest": run / "errors" / "ingest.parquet", "features": run / "features" / "errors.parquet",
              "render": run / "errors" / "render.parquet", "prompts": run / "prompts" / "errors.parquet",
              "validate": run / "errors" / "validate.parquet"}
    out: dict[str, list[str]] = {}
    for stage, path in tables.items():
        if path.is_file():
            if not {"severity", "record_id"} <= set(pl.scan_parquet(path).collect_schema().names()):
                continue
            df = pl.read_parquet(path, columns=["record_id", "severity"])  # not the messages of every warning
            ids = df.filter(pl.col("severity") == "error")["record_id"].drop_nulls().unique().sort()
            out[stage] = ids.to_list()
    answers = run / "generate" / "answers.parquet"
    if answers.is_file():
        a = pl.read_parquet(answers, columns=["record_id", "status"])
        ok = set(a.filter(pl.col("status") == "ok")["record_id"].to_list())
        out["generate"] = sorted(set(a["record_id"].drop_nulls().to_list()) - ok)
    return out
