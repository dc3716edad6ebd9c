"""Prefect flows over the chain of ``pipeline.run_all``.

Importing this package sets the project's Prefect defaults before Prefect reads its settings (an explicit
environment variable or profile setting still wins): the ephemeral API server that a flow run without
``PREFECT_API_URL`` starts gets 120 s to come up (Prefect's 20 s default is too short on a busy machine),
and nothing is sent home (server analytics and client telemetry off). ``prefect.toml`` at the project root
sets the same for Prefect's own CLI run from there.
"""
from __future__ import annotations

import os

PREFECT_DEFAULTS = {
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
}
for _k, _v in PREFECT_DEFAULTS.items():
    os.environ.setdefault(_k, _v)

try:
    import prefect  # noqa: F401  (Prefect is the [flows] extra, not a core dependency)
except ModuleNotFoundError as exc:  # a core-only install (make demo): say how to get the flows
    raise ModuleNotFoundError(
        "flows/ needs Prefect: pip install 'ecg-grounding[flows]' (make test installs it)", name=exc.name) from exc
