"""Deployments of the grounding flow that data engineers schedule.

``python -m flows.deployments`` serves them from this process (a long-running ``flow.serve``-style
runner against the Prefect API in ``PREFECT_API_URL``); ``build_deployments()`` returns them for
``prefect.deploy`` / a work pool instead. Parameters are plain JSON, so the Prefect UI can edit them.

- ``nightly-synthetic``: the embedded default, 1,000 synthetic records, offline rules writer, every night.
- ``ptbxl-gpt4o``: a PTB-XL release with GPT-4o, capped by ``max_cost``; no schedule (run on demand).
"""
from __future__ import annotations

import os

from flows.grounding import grounding_flow


def build_deployments(out_root: str | None = None) -> list:
    out_root = out_root or os.environ.get("ECG_GROUNDING_OUT", "outputs")
    return [
        grounding_flow.to_deployment(
            name="nightly-synthetic", cron="0 2 * * *",
            parameters={"out": f"{out_root}/nightly-synthetic", "source": "synthetic", "n": 1000, "llm": "rules"},
            tags=["ecg-grounding", "synthetic"],
        ),
        grounding_flow.to_deployment(
            name="ptbxl-gpt4o",
            parameters={"out": f"{out_root}/ptbxl-gpt4o", "source": "ptbxl",
                        "root": os.environ.get("PTBXL_ROOT", "data/ptbxl"),
                        "llm": "openai:gpt-4o-2024-08-06", "max_cost": 50.0},
            tags=["ecg-grounding", "ptbxl", "paid"],
        ),
    ]


if __name__ == "__main__":
    from prefect import serve

    serve(*build_deployments())
