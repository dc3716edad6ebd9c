"""Data truth end to end on LUDB: the PR / QRS / QT that accepted answers cite, against LUDB's experts.

    .venv/bin/python benchmarks/cited_truth.py [--ludb ../shared/data/ludb] [--keep DIR] [--run DIR]

Runs the chain as a user would (``ecg-grounding run --source ludb --root LUDB --out DIR/run``: rules writer,
validator), then scores it with ``../shared/tools/cited_truth.py`` (every PR / QRS / QT an accepted answer cites
against the experts' value: the median over leads of each lead's median interval; within 20 / 20 / 30 ms)
and prints the tool's report. Beside it, from the same answers and the run's features:

- the same score over the cited values that ``GroundingContext.citable`` allows (what a writer honouring it,
  and a validator rejecting the rest, publish), with the worst miss;
- coverage: the share of records whose PR (records where the experts annotate P waves), QRS and QT are
  citable, and of all three together;
- millivolts: numbers in mV the accepted answers state (LUDB's amplitudes are normalised: none may be cited),
  and how many of those the contexts allow (must be 0).

``--run DIR`` scores an existing run folder instead of running the chain. The record-level intervals of the
features alone (every record, cited or not) are in ``benchmarks/ludb.py``.
"""
from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_LUDB = REPO.parent / "shared" / "data" / "ludb"
TOOL = REPO.parent / "shared" / "tools" / "cited_truth.py"
COLUMN = {"PR": "pr_ms", "QRS": "qrs_ms", "QT": "qt_ms"}
MV = re.compile(r"(-?\d+(?:\.\d+)?)\s*mV\b")


def _tool():
    spec = importlib.util.spec_from_file_location("cited_truth", TOOL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_chain(ludb: Path, out: Path) -> float:
    """``ecg-grounding run --source ludb`` into ``out`` (wall seconds)."""
    if out.exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "--source", "ludb", "--root", str(ludb),
                           "--out", str(out)], capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"ecg-grounding run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    print("\n".join(ln for ln in proc.stdout.splitlines() if ln.startswith(("[", "records:", "grounding"))))
    return wall


def answers(run: Path) -> list[tuple[str, str]]:
    """(record id, answer text) of every accepted answer of the run."""
    out = []
    for f in sorted(glob.glob(str(run / "instructions" / "*.json"))):
        items = json.loads(Path(f).read_text())
        if isinstance(items, list):
            out += [(str(it["id"]).split("-")[0], it["conversations"][1]["value"]) for it in items]
    return out


def score(run: Path, ludb: Path) -> dict:
    """Cited values (all / citable) against the experts, coverage and millivolts; printed and returned."""
    from pipeline.context import load_contexts

    tool = _tool()
    ctxs = load_contexts(run)
    experts = {rid: tool.expert(ludb, rid) for rid in ctxs}
    tol = {k: tool.TOL[k] for k in COLUMN}
    cited = {"all": [], "citable": []}  # (rid, kind, value, expert, error)
    mv_cited, mv_citable = 0, 0
    for rid, text in answers(run):
        ctx, ref = ctxs.get(rid), experts.get(rid) or tool.expert(ludb, rid)
        for kind, col in COLUMN.items():
            for m in tool.PAT[kind].finditer(text):
                if ref.get(kind) is None:
                    continue
                v = float(m.group(1))
                row = (rid, kind, v, ref[kind], v - ref[kind])
                cited["all"].append(row)
                if ctx is not None and ctx.citable(col):
                    cited["citable"].append(row)
        for m in MV.finditer(text):
            mv_cited += 1
            # any amplitude column would do: LUDB's flags make every one uncitable
            mv_citable += bool(ctx is not None and ctx.citable("r_amp_mv", "II"))
    res: dict = {"cited": {}, "coverage": {}, "mv_cited": mv_cited, "mv_citable": mv_citable}
    for name, rows in cited.items():
        ok = [r for r in rows if abs(r[4]) <= tol[r[1]]]
        worst = max(rows, key=lambda r: abs(r[4])) if rows else None
        res["cited"][name] = {"n": len(rows), "within": len(ok), "rate": len(ok) / len(rows) if rows else None,
                              "worst": worst, "misses": [r for r in rows if abs(r[4]) > tol[r[1]]]}
    n_all = 0
    for kind, col in COLUMN.items():
        have = [rid for rid, e in experts.items() if e.get(kind) is not None]
        ok = [rid for rid in have if ctxs[rid].record.get(col) is not None and ctxs[rid].citable(col)]
        res["coverage"][kind] = (len(ok), len(have))
    every = [rid for rid in ctxs if all(ctxs[rid].citable(c) and ctxs[rid].record.get(c) is not None
                                        for k, c in COLUMN.items() if experts[rid].get(k) is not None)]
    n_all = len(ctxs)
    res["coverage"]["all three"] = (len(every), n_all)
    return res


def report(res: dict) -> None:
    print("\n## Cited PR / QRS / QT vs LUDB's experts (within 20 / 20 / 30 ms)\n")
    print("| answers' values | cited | within tolerance | share | worst miss (ms) |\n|---|---:|---:|---:|---|")
    for name, label in (("all", "every cited value (today's rules writer)"),
                        ("citable", "values GroundingContext.citable allows")):
        c = res["cited"][name]
        worst = c["worst"]
        w = f"{worst[4]:+.0f} (record {worst[0]} {worst[1]} {worst[2]:g} vs {worst[3]:g})" if worst else "-"
        rate = f"{100 * c['rate']:.1f}%" if c["rate"] is not None else "-"
        print(f"| {label} | {c['n']} | {c['within']} | {rate} | {w} |")
    for name in ("all", "citable"):
        for rid, kind, v, ref, err in res["cited"][name]["misses"]:
            print(f"miss ({name}): record {rid} {kind} cited {v:g}, experts {ref:g} ({err:+.0f} ms)")
    print("\n## Coverage: records whose value is citable\n")
    print("| value | citable / records with an expert value | share |\n|---|---:|---:|")
    for kind, (ok, n) in res["coverage"].items():
        print(f"| {kind} | {ok} / {n} | {100 * ok / max(n, 1):.1f}% |")
    tot_ok = sum(res["coverage"][k][0] for k in COLUMN)
    tot_n = sum(res["coverage"][k][1] for k in COLUMN)
    print(f"| PR + QRS + QT values | {tot_ok} / {tot_n} | {100 * tot_ok / max(tot_n, 1):.1f}% |")
    print(f"\nmillivolt numbers in accepted answers: {res['mv_cited']} (of which the contexts allow "
          f"{res['mv_citable']}: LUDB's amplitudes are normalised)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ludb", default=str(DEFAULT_LUDB))
    ap.add_argument("--keep", help="write the run here instead of a temp dir")
    ap.add_argument("--run", help="score this existing run folder (no new run)")
    args = ap.parse_args()
    ludb = Path(args.ludb)
    if args.run:
        run = Path(args.run)
    else:
        work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="cited-truth-"))
        run = work / "run"
        wall = run_chain(ludb, run)
        print(f"ecg-grounding run: {wall:.1f} s wall")
    print("\n## ../shared/tools/cited_truth.py\n")
    proc = subprocess.run([sys.executable, str(TOOL), str(run), str(ludb)], capture_output=True, text=True,
                          env={**os.environ})
    print(proc.stdout.strip() or proc.stderr.strip())
    report(score(run, ludb))
    print(f"\nrun folder: {run}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
