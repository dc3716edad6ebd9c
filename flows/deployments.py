"""The deployments of ``prefect.yaml``, served from this process (no work pool, no worker).

    ECG_GROUNDING_OUT=/data/ecg-grounding python -m flows.deployments            # every process deployment
    python -m flows.deployments --only nightly-synthetic

``prefect.yaml`` is the one place the deployments are defined (names, entrypoints, schedules, parameters);
this module reads its process-pool deployments and serves them with ``prefect.serve`` against the API in
``PREFECT_API_URL``. ``{{ $VAR }}`` placeholders are filled in from the environment as ``prefect deploy``
does (``ECG_GROUNDING_OUT`` defaults to ``outputs`` here, beside the checkout this runs in).
"""
from __future__ import annotations

import flows  # noqa: F401  (Prefect defaults before Prefect is imported)

import argparse
import importlib
import os
from pathlib import Path

import yaml

PREFECT_YAML = Path(__file__).resolve().parents[1] / "prefect.yaml"


def deployment_specs(path: Path = PREFECT_YAML, env: dict | None = None) -> list[dict]:
    """The deployments of ``prefect.yaml`` with their placeholders filled from ``env`` (default: this
    environment, plus ``ECG_GROUNDING_OUT=outputs`` when unset)."""
    from prefect.utilities.templating import apply_values

    env = dict(os.environ if env is None else env)
    env.setdefault("ECG_GROUNDING_OUT", "outputs")
    raw = yaml.safe_load(path.read_text())
    saved = dict(os.environ)
    try:  # apply_values reads {{ $VAR }} from os.environ
        os.environ.clear()
        os.environ.update(env)
        return [apply_values(d, {}, remove_notset=True, warn_on_notset=False) for d in raw["deployments"]]
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _flow(entrypoint: str):
    module, _, name = entrypoint.partition(":")
    return getattr(importlib.import_module(module), name)


def build_deployments(out_root: str | None = None, only: list[str] | None = None) -> list:
    """``RunnerDeployment``s of the process-pool deployments of ``prefect.yaml`` (for ``prefect.serve``)."""
    env = dict(os.environ)
    if out_root:
        env["ECG_GROUNDING_OUT"] = out_root
    out = []
    for spec in deployment_specs(env=env):
        if spec.get("work_pool", {}).get("name") != "ecg-process" or (only and spec["name"] not in only):
            continue
        from prefect.schedules import Cron

        schedules = [Cron(s["cron"], timezone=s.get("timezone")) for s in spec.get("schedules") or []
                     if s.get("active", True)]
        params = {k: v for k, v in (spec.get("parameters") or {}).items() if v != ""}  # unset {{ $VAR }}
        out.append(_flow(spec["entrypoint"]).to_deployment(
            name=spec["name"], description=spec.get("description"), tags=spec.get("tags"), parameters=params,
            schedules=schedules))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flows.deployments", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", default=None, help="deployment names (default: every process one)")
    a = p.parse_args(argv)
    from prefect import serve

    serve(*build_deployments(only=a.only))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
