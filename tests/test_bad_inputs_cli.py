"""Every case of the bad-input corpus (tests/bad_inputs/*.yaml) through the real CLI, in a subprocess.

Per case: the exit code; the reason code of every record that fails (and nothing else failing); the records that
must come through; for bad usage, one line on stderr and nothing written. For every case: no traceback, no
multimodal prompt without its image, no API key in any output. The cases run once per session, three at a time
(only those selected), then each test checks its own.
"""
from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from bad_inputs import Bases, Case, load_corpus, prepare_batch, prepare_case, run_jobs
from conftest import shared_path

from pipeline.record import REASON_CODES, TABLE_REASON_CODES

CASES, BATCHES = load_corpus()


def _params():
    out = []
    for c in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=f"built by {c.pending}")] if c.pending else []
        out.append(pytest.param(c, id=c.id, marks=marks))
    return out


@pytest.fixture(scope="session")
def corpus(request, tmp_path_factory):
    """Build and run the selected cases (and the batches they belong to) once; job key -> result."""
    selected = set()
    for item in request.session.items:
        case = getattr(getattr(item, "callspec", None), "params", {}).get("case")
        if isinstance(case, Case):
            selected.add(case.id)
    work = tmp_path_factory.mktemp("bad-corpus")
    bases = Bases(work / "bases", shared_path())
    wanted = [c for c in CASES if c.id in selected]
    jobs = []
    for name in sorted({c.batch for c in wanted if c.batch}):
        jobs += prepare_batch(name, BATCHES[name], [c for c in CASES if c.batch == name], bases, work)
    jobs += [prepare_case(c, bases, work) for c in wanted if not c.batch]
    return run_jobs(jobs, workers=2)


# ---------------------------------------------------------------------------------------------- reading
def _tables(*folders: Path) -> list[Path]:
    """The errors tables of stage outputs under ``folders`` (not the per-shard parts)."""
    found = []
    for folder in folders:
        if folder.is_dir():
            found += [p for p in folder.rglob("errors.parquet")]
            found += [p for p in folder.rglob("errors/*.parquet") if not p.name.startswith("part-")]
    return sorted(set(found))


def _error_rows(*folders: Path) -> pl.DataFrame:
    frames = [pl.read_parquet(p).with_columns(pl.lit(str(p)).alias("table")) for p in _tables(*folders)]
    frames = [f for f in frames if f.height]
    return pl.concat(frames) if frames else pl.DataFrame(
        schema={"record_id": pl.String, "severity": pl.String, "code": pl.String, "lead": pl.String,
                "table": pl.String})


def _through(folder: Path) -> set[str]:
    """Record ids that came through any stage output under ``folder``."""
    ids: set[str] = set()
    if not folder.is_dir():
        return ids
    for p in [*folder.rglob("manifest.parquet"), *folder.rglob("records/part-*.parquet"),
              *folder.rglob("prompts.parquet"), *folder.rglob("answers.parquet")]:
        df = pl.read_parquet(p)
        if "status" in df.columns:
            df = df.filter(pl.col("status") == "ok")
        ids |= set(df["record_id"].to_list())
    return ids


def _primary(folder: Path, records_only: bool = False) -> set[str]:
    """Record ids of the command's main output (manifest, features records, or prompts unless
    ``records_only``: a record can lose one prompt variant and keep the others)."""
    for pattern in ("manifest.parquet", "records/part-*.parquet") + (() if records_only else ("prompts.parquet",)):
        files = sorted(folder.glob(pattern))
        if files:
            return set(pl.concat([pl.read_parquet(f).select("record_id") for f in files])["record_id"].to_list())
    return set()


# ---------------------------------------------------------------------------------------------- invariants
def _no_multimodal_prompt_without_image(*folders: Path) -> None:
    for folder in folders:
        for p in folder.rglob("prompts.parquet") if folder.is_dir() else []:
            # images are relative to the run folder: the parent of the prompts/ folder (the chain's chunk parts
            # live deeper, in prompts/.parts/part-N/), else the prompts file's own folder
            prompts_dir = next((d for d in p.parents if d.name == "prompts"), None)
            run_dir = prompts_dir.parent if prompts_dir is not None else p.parent
            mm = pl.read_parquet(p).filter(pl.col("variant") == "multimodal")
            for rid, img in mm.select("record_id", "image_path").iter_rows():
                assert img is not None and (run_dir / img).is_file(), f"{p}: multimodal prompt of {rid} without image"


def _no_key_anywhere(case: Case, results: list, folders: list[Path]) -> None:
    keys = [v for k, v in case.env.items() if k.endswith("_API_KEY") and v and v.strip()]
    for key in keys:
        for r in results:
            assert key not in r.stdout and key not in r.stderr
        for folder in folders:
            for f in folder.rglob("*") if folder.is_dir() else []:
                if f.is_file():
                    assert key.encode() not in f.read_bytes(), f


def _common(case: Case, r) -> None:
    tail = f"\n$ ecg-grounding {' '.join(r.argv)}\n--- stdout\n{r.stdout[-2000:]}\n--- stderr\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr, tail
    assert r.returncode == case.exit, f"exit {r.returncode}, want {case.exit}{tail}"
    for text in case.stderr:
        assert text in r.stderr, f"{text!r} not on stderr{tail}"
    if case.exit == 2:
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1, f"a usage error is one line{tail}"
        out = Path(r.where["out"])
        assert not out.exists() or not any(f.is_file() for f in out.rglob("*")), f"wrote under {out}{tail}"


# ---------------------------------------------------------------------------------------------- the tests
@pytest.mark.parametrize("case", _params())
def test_bad_input_case(case: Case, corpus) -> None:
    if case.batch:
        n = len(BATCHES[case.batch]["commands"])
        _check_batch_case(case, [corpus[f"batch:{case.batch}:{i}"] for i in range(n)])
        return
    r = corpus[case.id]
    _common(case, r)
    out, root = Path(r.where["out"]), Path(r.where["root"])
    folders = [out, root]
    written = Path(r.argv[r.argv.index("--out") + 1]) if "--out" in r.argv else out
    _no_multimodal_prompt_without_image(written)  # what this command wrote (edits may break a base's own)
    _no_key_anywhere(case, [r], folders)
    rows = _error_rows(*folders)
    failed = rows.filter(pl.col("severity") == "error")
    if case.errors:
        got = {}
        for rid, code in failed.select("record_id", "code").iter_rows():
            got.setdefault(rid, set()).add(code)
        assert set(got) == set(case.errors), f"failed {got}, want {case.errors}"
        for rid, code in case.errors.items():
            assert code in got[rid], (rid, got[rid])
    elif case.exit == 0:
        assert failed.height == 0, failed
    for rid, n in case.error_rows.items():
        per_table = failed.filter(pl.col("record_id") == rid).group_by("table").len()["len"]
        assert per_table.max() == n, (rid, per_table)
    for rid, code in case.warnings.items():
        w = rows.filter((pl.col("record_id") == rid) & (pl.col("severity") == "warning"))
        assert code in w["code"].to_list(), (rid, w)
    through = _through(out)
    for rid in case.ok:
        assert rid in through, f"{rid} did not come through: {sorted(through)}"
    for rid in case.errors:
        assert rid not in _primary(out, records_only=True), f"{rid} failed but is in the output"
    if case.n_ok is not None:
        assert len(_primary(out)) == case.n_ok, sorted(_primary(out))
    if case.stdout_json:
        doc = json.loads(r.stdout)
        assert {k: doc.get(k) for k in case.stdout_json} == case.stdout_json, doc
    if case.answers:
        ans = pl.read_parquet(out / "answers.parquet")
        got = dict(ans.select("record_id", "error_code").iter_rows())
        assert got == case.answers, got
    if case.reference_none or case.reference_kept:
        man = pl.read_parquet(out / "manifest.parquet")
        refs = {rid: json.loads(ref) for rid, ref in man.select("record_id", "reference").iter_rows()}
        for rid, fields in case.reference_none.items():
            assert all(refs[rid][f] is None for f in fields), refs[rid]
        for rid, fields in case.reference_kept.items():
            assert all(refs[rid][f] is not None for f in fields), refs[rid]


def _check_batch_case(case: Case, results) -> None:
    exp = case.expect
    for r in results:
        _common(case, r)
    for r in results:
        out = Path(r.argv[r.argv.index("--out") + 1])
        command = r.argv[0]
        rows = _error_rows(out).filter(pl.col("record_id") == case.id)
        errors = rows.filter(pl.col("severity") == "error")
        through = _primary(out)
        if exp.outcome == "any":
            assert exp.code in rows["code"].to_list() or command != "ingest", (case.id, rows)
            continue
        if exp.outcome == "error":
            assert errors["code"].to_list() == [exp.code], (command, case.id, errors)
            if exp.lead:
                assert errors["lead"].to_list() == [exp.lead], (command, case.id, errors)
            assert case.id not in through
            continue
        assert errors.height == 0, (command, case.id, errors)
        assert case.id in through, (command, case.id)
        if command == "ingest":
            warned = {(w["code"], w["lead"]) for w in rows.filter(pl.col("severity") == "warning").iter_rows(named=True)}
            want = {(exp.code, exp.lead)} if exp.outcome == "warning" else set()
            assert warned == want, (case.id, warned)
    _no_multimodal_prompt_without_image(*[Path(r.where["out"]) for r in results])


def test_corpus_is_data_and_large_enough():
    assert len(CASES) >= 80
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    codes = set(REASON_CODES) | set(TABLE_REASON_CODES)
    for c in CASES:
        assert c.what and c.exit in (0, 1, 2), c.id
        if c.batch:
            assert c.expect is not None and (c.expect.code is None or c.expect.code in codes), c.id
            continue
        assert c.command, c.id
        wanted = [*c.errors.values(), *c.warnings.values(), *c.codes.values()]
        assert all(code in codes for code in wanted), (c.id, wanted)
        # every case says what must happen beyond its exit code
        assert c.stderr or c.errors or c.warnings or c.ok or c.n_ok is not None or c.answers or c.exit == 0, c.id
        if c.exit == 2:
            assert c.stderr, f"{c.id}: a usage error names its line"
