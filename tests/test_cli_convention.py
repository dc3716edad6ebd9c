"""One CLI convention (issue 18): every subcommand described in plain text, the same flags meaning the same
thing everywhere, --json on every command, --version, global -v / -q, examples that write under outputs/."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from conftest import REPO

from pipeline.batch import DEFAULT_CHUNK_SIZE
from pipeline.cli import VERBOSITY_ENV, build_parser, main
from pipeline.sources import SOURCE_NAMES
from pipeline.synth_cli import DEFAULT_N

EXE = str(Path(sys.executable).with_name("ecg-grounding"))
MARKUP = re.compile(r"``|:func:|:class:|:mod:|\*\*|`")


def _subparsers() -> dict:
    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return dict(action.choices)


SUBCOMMANDS = sorted(_subparsers())


def test_the_chain_has_its_subcommands():
    # at least the chain's eight; later ones (export, train, interpret) get the same checks below
    assert set(SUBCOMMANDS) >= {"synth", "ingest", "features", "render", "prompts", "generate", "validate", "run"}


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_help_is_plain_text_with_a_description_and_exit_codes(name):
    p = _subparsers()[name]
    text = p.format_help()
    assert not MARKUP.search(text), MARKUP.search(text)
    desc = p.description or ""
    assert len(desc.split()) >= 8 and desc.strip() != p.prog, desc  # a sentence, not the name again
    assert "Exit status: 0 done; 1 some records failed" in " ".join(text.split())
    for flag in ("--json", "-v, --verbose", "-q, --quiet"):
        assert flag in text, flag
    # examples write only under outputs/ (never an un-ignored folder in the checkout)
    for out in re.findall(r"--out[ =](\S+)", p.description):
        assert out.startswith("outputs/"), out
    for line in text.splitlines():
        assert len(line) <= 120, line


def test_help_through_the_console_script():
    for name in ("generate", "features"):
        proc = subprocess.run([EXE, name, "--help"], capture_output=True, text=True, timeout=120, cwd=REPO)
        assert proc.returncode == 0 and proc.stderr == ""
        assert not MARKUP.search(proc.stdout), proc.stdout  # generate's help used to show raw RST
    top = subprocess.run([EXE, "--help"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert top.returncode == 0 and all(n in top.stdout for n in SUBCOMMANDS)


def test_flags_mean_the_same_everywhere():
    subs = _subparsers()
    for name, p in subs.items():
        actions = {a.dest: a for a in p._actions}
        if "source" in actions:
            assert tuple(actions["source"].choices) == SOURCE_NAMES, name
        if "chunk_size" in actions:
            assert actions["chunk_size"].default == DEFAULT_CHUNK_SIZE, name
        if "n" in actions:
            assert actions["n"].default == DEFAULT_N, name
        assert "json" in actions and "verbose" in actions and "quiet" in actions, name
    reads_a_source = [n for n, p in subs.items() if any(a.dest == "window_s" for a in p._actions)]
    assert set(reads_a_source) >= {"ingest", "features", "render", "run"}


def test_version():
    proc = subprocess.run([EXE, "--version"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0 and proc.stdout.strip() == f"ecg-grounding {version('ecg-grounding')}"


def test_quiet_and_verbose_set_the_environment_before_the_stage(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(VERBOSITY_ENV, raising=False)
    assert main(["-q", "synth", "--n", "1", "--out", str(tmp_path / "a")]) == 0
    assert os.environ[VERBOSITY_ENV] == "-1" and capsys.readouterr().out == ""
    assert main(["synth", "--n", "1", "--out", str(tmp_path / "b"), "-v"]) == 0  # after the subcommand too
    assert os.environ[VERBOSITY_ENV] == "1" and "wrote 1 records" in capsys.readouterr().out
    monkeypatch.delenv(VERBOSITY_ENV)
    assert main(["synth", "--n", "1", "--out", str(tmp_path / "c")]) == 0
    assert os.environ[VERBOSITY_ENV] == "0" and "wrote 1 records" in capsys.readouterr().out
    monkeypatch.setenv(VERBOSITY_ENV, "-1")  # set by a scheduler: no flag keeps it
    assert main(["synth", "--n", "1", "--out", str(tmp_path / "d")]) == 0
    assert os.environ[VERBOSITY_ENV] == "-1" and capsys.readouterr().out == ""


def test_quiet_run_prints_no_stage_lines_and_json_is_machine_readable(tmp_path):
    """`run` reads the variable in its stage loop: -q silences it; --json prints one JSON document."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    quiet = subprocess.run([EXE, "-q", "run", "--n", "2", "--out", str(tmp_path / "q")], capture_output=True,
                           text=True, env=env, timeout=600, cwd=REPO)
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == "", quiet
    loud = subprocess.run([EXE, "run", "--n", "2", "--out", str(tmp_path / "q"), "--json"], capture_output=True,
                          text=True, env=env, timeout=600, cwd=REPO)
    assert loud.returncode == 0, loud.stderr
    report = json.loads(loud.stdout)
    assert report["summary"]["records_accepted"] == 2 and report["paths"]["manifest"].endswith("manifest.parquet")
    assert "[   ingest]" not in loud.stdout  # the JSON is the whole of stdout


def test_every_command_prints_json_with_json_and_text_without(tmp_path, capsys):
    """The whole chain, stage by stage, through the CLI's entry point: --json gives one JSON document on every
    command, and the same commands without it print text."""
    root, run = tmp_path / "data", tmp_path / "run"
    steps = [
        ["synth", "--n", "2", "--seed", "1", "--out", str(root)],
        ["ingest", "--source", "synthetic", "--root", str(root), "--out", str(run)],
        ["features", "--source", "synthetic", "--root", str(root), "--out", str(run / "features")],
        ["render", "--source", "synthetic", "--root", str(root), "--out", str(run / "images"), "--dpi", "60"],
        ["prompts", "--features", str(run / "features"), "--manifest", str(run / "manifest.parquet"),
         "--images", str(run / "images"), "--out", str(run / "prompts")],
        ["generate", "--prompts", str(run / "prompts"), "--out", str(run / "generate")],
        ["validate", "--answers", str(run / "generate" / "answers.parquet"), "--features", str(run / "features"),
         "--manifest", str(run / "manifest.parquet"), "--images", str(run / "images"),
         "--out", str(run / "instructions")],
    ]
    for argv in steps:
        assert main(argv + ["--json"]) == 0, argv
        doc = json.loads(capsys.readouterr().out)
        assert isinstance(doc, dict) and doc, argv
        if argv[0] != "synth":
            assert doc["failures"]["n_failed"] == 0, argv
        assert main(argv) == 0, argv  # again, without --json: resumes, and prints text
        text = capsys.readouterr().out
        assert text.strip() and not text.lstrip().startswith("{"), (argv, text)


def test_readme_examples_write_only_under_outputs():
    readme = (REPO / "README.md").read_text()
    outs = re.findall(r"ecg-grounding[^\n]*?--out[ =](\S+)", readme.replace("\\\n", " "))
    assert outs and all(o.startswith("outputs/") for o in outs), outs
