"""run.json of a run that a stage stopped mid-way: what ran, what did not, and the error."""
from __future__ import annotations

import json

import pytest

from pipeline.run_all import RunConfig, run_pipeline
from pipeline.runinfo import git_info, package_versions


def test_a_stage_that_raises_leaves_a_run_json(tmp_path, monkeypatch):
    import pipeline.render

    def disk_full(*args, **kwargs):  # a failure no pre-flight can foresee, after ingest and features ran
        raise OSError("No space left on device")

    monkeypatch.setattr(pipeline.render, "render_ids", disk_full)  # what the chain's render chunks call
    out = tmp_path / "run"
    cfg = RunConfig(n=3, out=out)
    with pytest.raises(OSError, match="No space"):
        run_pipeline(cfg)
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "error" and "No space" in info["error"]
    assert set(info["stages"]) == {"synth", "ingest", "features"}
    assert info["stages"]["features"]["ok"] == 3
    assert info["config"]["layout"] == "3x4+II" and info["ended_at"] >= info["started_at"]


def test_a_bad_layout_stops_the_run_before_any_stage(tmp_path):
    from pipeline.record import ConfigError

    with pytest.raises(ConfigError, match="5x5"):
        run_pipeline(RunConfig(n=3, out=tmp_path / "run", layout="5x5"))
    assert not (tmp_path / "run").exists()


def test_git_info_outside_a_checkout_and_versions(tmp_path):
    assert git_info(tmp_path) is None  # an installed wheel: no commit claimed
    assert set(package_versions(["polars", "no-such-dist"])) == {"polars"}
