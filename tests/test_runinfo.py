"""run.json of a run that a stage stopped mid-way: what ran, what did not, and the error."""
from __future__ import annotations

import json

import pytest

from pipeline.run_all import RunConfig, run_pipeline
from pipeline.runinfo import git_info, package_versions


def test_a_stage_that_raises_leaves_a_run_json(tmp_path):
    out = tmp_path / "run"
    cfg = RunConfig(n=3, out=out, layout="5x5")  # no such layout: render raises after ingest and features
    with pytest.raises(ValueError, match="5x5"):
        run_pipeline(cfg)
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "error" and "5x5" in info["error"]
    assert set(info["stages"]) == {"synth", "ingest", "features"}
    assert info["stages"]["features"]["n_measured"] == 3
    assert info["config"]["layout"] == "5x5" and info["ended_at"] >= info["started_at"]


def test_git_info_outside_a_checkout_and_versions(tmp_path):
    assert git_info(tmp_path) is None  # an installed wheel: no commit claimed
    assert set(package_versions(["polars", "no-such-dist"])) == {"polars"}
