"""Data truth end to end on LUDB: the PR / QRS / QT that accepted answers cite, against LUDB's experts.

    .venv/bin/python benchmarks/cited_truth.py [--ludb ../shared/data/ludb] [--keep DIR] [--run DIR]
        [--windows 0,0.2,0.4,0.6,0.8,1,1.2 [--window-length 8.8]] [--perturb emg,wander,mains,all [--seeds 2]]

Runs the chain as a user would (``ecg-grounding run --source ludb --root LUDB --out DIR/run``: rules writer,
validator), then scores it with ``../shared/tools/cited_truth.py`` (every PR / QRS / QT an accepted answer cites
against the experts' value: the median over leads of each lead's median interval; within 20 / 20 / 30 ms)
and prints the tool's report. Beside it, from the same answers and the run's features:

- the same score over the cited values that ``GroundingContext.citable`` allows (what a writer honouring it,
  and a validator rejecting the rest, publish), with the worst miss;
- coverage: the share of records whose PR (records where the experts annotate P waves), QRS and QT are
  citable, and of all three together; each value not covered listed with our reading and how far the experts'
  own leads spread on it (the interquartile range over leads of their per-lead medians, beside the same spread
  on the records covered; misses are printed with it too). Part of that spread is real (where a wave starts in
  each lead's projection), but a record value whose leads the experts put two or three tolerances apart is
  ill defined as a reference, and withholding it is the confidence doing its job;
- millivolts: numbers in mV the accepted answers state (LUDB's amplitudes are normalised: none may be cited),
  and how many of those the contexts allow (must be 0).

``--perturb`` runs the chain again on copies of the records with recording artefacts added (the generator's
electrode noise: muscle noise, baseline wander, mains hum, combined through the electrodes as a real
electrocardiograph does): a confidence that only knows these recordings' own noise lets a value go wrong
on a noisier record; the values it lets through must stay within tolerance (or become not citable).

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
import statistics
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


def run_chain(ludb: Path, out: Path, window: tuple[float, float] | None = None, quiet: bool = False) -> float:
    """``ecg-grounding run --source ludb`` into ``out`` (wall seconds); ``window``: (start s, length s) of each
    record instead of its whole 10 s."""
    if out.exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    extra = ["--window-start-s", str(window[0]), "--window-s", str(window[1])] if window else []
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "--source", "ludb", "--root", str(ludb),
                           "--out", str(out), *extra], capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"ecg-grounding run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    if not quiet:
        print("\n".join(ln for ln in proc.stdout.splitlines() if ln.startswith(("[", "records:", "grounding"))))
    return wall


def _miss(row: tuple, spread: dict) -> str:
    """A miss as 'record value error (the experts' own spread over leads)': a miss on a value the experts' leads
    disagree on by more than its tolerance is as much the reference's as ours."""
    iqr = spread.get(row[0], {}).get(row[1])
    return f"{row[0]} {row[1]} {row[4]:+.0f}" + (f" (experts' leads IQR {iqr:.0f})" if iqr is not None else "")


def windows(ludb: Path, work: Path, starts: list[float], length_s: float) -> None:
    """The chain on other windows of the same records: each window holds other beats, so a value that is right
    only for the beats of the whole 10 s (a confidence check fitted to them, a median beat that changes kind)
    shows here, the nearest these 35 records come to records never seen. Prints each window's cited values
    against the experts (the experts' values come from their whole annotated span) and the total."""
    total = within = 0
    print(f"\n## Windows of {length_s:g} s (cited values that GroundingContext.citable allows)\n")
    print("| window start (s) | cited | within tolerance | misses |\n|---:|---:|---:|---|")
    for start in starts:
        run = work / f"window-{start:g}"
        run_chain(ludb, run, (start, length_s), quiet=True)
        res = score(run, ludb)
        c = res["cited"]["citable"]
        total, within = total + c["n"], within + c["within"]
        misses = ", ".join(_miss(r, res["spread"]) for r in c["misses"]) or "-"
        print(f"| {start:g} | {c['n']} | {c['within']} | {misses} |")
    print(f"\nall windows: {within} / {total} = {100 * within / max(total, 1):.1f}% within tolerance")


# recording artefacts added by --perturb (mV RMS / amplitude, relative to LUDB's 1 mV peak-to-peak leads): within
# the generator's own ranges for a noisy record (pipeline.synthetic: EMG 0.005-0.03, wander 0.02-0.3)
PERTURB = {"emg": {"emg_noise_mv": 0.02}, "wander": {"baseline_wander_mv": 0.2},
           "mains": {"mains_hum_mv": 0.05}, "all": {"emg_noise_mv": 0.015, "baseline_wander_mv": 0.15,
                                                   "mains_hum_mv": 0.03}}


def perturbed_copy(ludb: Path, out: Path, artefacts: dict, seed: int) -> Path:
    """A LUDB root at ``out`` whose records carry ``artefacts`` (``SynthParams`` noise fields) on top of their own:
    the headers (comments, gains) and the experts' annotation files are the originals."""
    import numpy as np
    import wfdb

    from pipeline.synthetic_noise import electrode_noise
    from pipeline.synthetic_params import SynthParams
    from pipeline.synthetic_waves import derive_limb_leads

    if out.exists():
        shutil.rmtree(out)
    (out / "data").mkdir(parents=True)
    shutil.copy(ludb / "ludb.csv", out / "ludb.csv")  # copies: the source refuses links that leave its root
    params = SynthParams(**artefacts)
    for i, hea in enumerate(sorted((ludb / "data").glob("*.hea"))):
        rec = wfdb.rdrecord(str(hea.with_suffix("")))
        n = rec.p_signal.shape[0]
        noise8 = electrode_noise(params, np.random.default_rng([seed, i]), n)  # I, II, V1..V6
        noise = np.zeros((12, n))
        noise[[0, 1, 6, 7, 8, 9, 10, 11]] = noise8
        derive_limb_leads(noise)
        order = [nm.lower() for nm in rec.sig_name]
        std = ["i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6"]
        rec.p_signal = rec.p_signal + noise[[std.index(nm) for nm in order]].T
        rec.d_signal = None
        rec.adc(inplace=True)
        rec.p_signal = None
        rec.wrsamp(write_dir=str(out / "data"))
        for ann in (ludb / "data").glob(hea.stem + ".*"):
            if ann.suffix not in (".hea", ".dat"):
                shutil.copy(ann, out / "data" / ann.name)
    return out


def perturbations(ludb: Path, work: Path, names: list[str], seeds: int) -> None:
    """The chain on artefact-laden copies of the records (``PERTURB``), each scored against the experts."""
    total = within = 0
    print("\n## Records with recording artefacts added (cited values that GroundingContext.citable allows)\n")
    print("| artefacts | seed | cited | within tolerance | coverage PR / QRS / QT | misses |\n"
          "|---|---:|---:|---:|---|---|")
    for name in names:
        for seed in range(seeds):
            root = perturbed_copy(ludb, work / f"ludb-{name}-{seed}", PERTURB[name], seed)
            run = work / f"run-{name}-{seed}"
            run_chain(root, run, quiet=True)
            res = score(run, ludb)
            c = res["cited"]["citable"]
            total, within = total + c["n"], within + c["within"]
            cov = " / ".join(f"{res['coverage'][k][0]}/{res['coverage'][k][1]}" for k in COLUMN)
            misses = ", ".join(_miss(r, res["spread"]) for r in c["misses"]) or "-"
            print(f"| {name} | {seed} | {c['n']} | {c['within']} | {cov} | {misses} |", flush=True)
    print(f"\nall artefact runs: {within} / {total} = {100 * within / max(total, 1):.1f}% within tolerance")


def answers(run: Path) -> list[tuple[str, str]]:
    """(record id, answer text) of every accepted answer of the run."""
    out = []
    for f in sorted(glob.glob(str(run / "instructions" / "*.json"))):
        items = json.loads(Path(f).read_text())
        if isinstance(items, list):
            out += [(str(it["id"]).split("-")[0], it["conversations"][1]["value"]) for it in items]
    return out


_SPREAD: dict[tuple[str, str], dict] = {}  # (LUDB folder, record) -> expert_lead_spread: the same for every run


def expert_lead_spread(tool, ludb: Path, rid: str) -> dict[str, float | None]:
    """Per value (PR, QRS, QT): the interquartile range (ms) over leads of the experts' per-lead medians, each
    lead scored by the tool's own ``expert`` on that lead alone (its module-level ``LEADS`` set to that lead, so
    the annotations are parsed one way only); None where under four leads have one."""
    import numpy as np

    key = (str(ludb), rid)
    if key in _SPREAD:
        return _SPREAD[key]
    # the swap works only while ``expert`` reads the module's LEADS when called: fail loudly, not with spreads of 0
    if "LEADS" not in tool.expert.__code__.co_names:
        raise RuntimeError(f"{TOOL} no longer reads LEADS at call time: the per-lead spread cannot be taken")
    leads, per = tool.LEADS, {k: [] for k in COLUMN}
    try:
        for lead in leads:
            tool.LEADS = [lead]
            e = tool.expert(ludb, rid)
            for k in COLUMN:
                if e.get(k) is not None:
                    per[k].append(float(e[k]))
    finally:
        tool.LEADS = leads
    _SPREAD[key] = {k: (float(np.subtract(*np.percentile(v, [75, 25]))) if len(v) >= 4 else None)
                    for k, v in per.items()}
    return _SPREAD[key]


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
    spread = {rid: expert_lead_spread(tool, ludb, rid) for rid in ctxs}
    res["spread"], res["uncovered"], res["covered_spread"] = spread, [], {}
    for kind, col in COLUMN.items():
        have = [rid for rid, e in experts.items() if e.get(kind) is not None]
        ok = [rid for rid in have if ctxs[rid].record.get(col) is not None and ctxs[rid].citable(col)]
        res["coverage"][kind] = (len(ok), len(have))
        res["covered_spread"][kind] = [spread[rid][kind] for rid in ok if spread[rid][kind] is not None]
        for rid in sorted(set(have) - set(ok), key=lambda r: int(r) if r.isdigit() else r):
            rec = ctxs[rid].record
            res["uncovered"].append((rid, kind, rec.get(col), rec.get(col.replace("_ms", "_conf")),
                                     experts[rid][kind], spread[rid][kind]))
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
            iqr = res["spread"].get(rid, {}).get(kind)
            own = f"; the experts' own leads spread {iqr:.0f} ms (IQR)" if iqr is not None else ""
            print(f"miss ({name}): record {rid} {kind} cited {v:g}, experts {ref:g} ({err:+.0f} ms{own})")
    print("\n## Coverage: records whose value is citable\n")
    print("| value | citable / records with an expert value | share |\n|---|---:|---:|")
    for kind, (ok, n) in res["coverage"].items():
        print(f"| {kind} | {ok} / {n} | {100 * ok / max(n, 1):.1f}% |")
    tot_ok = sum(res["coverage"][k][0] for k in COLUMN)
    tot_n = sum(res["coverage"][k][1] for k in COLUMN)
    print(f"| PR + QRS + QT values | {tot_ok} / {tot_n} | {100 * tot_ok / max(tot_n, 1):.1f}% |")
    if res["uncovered"]:
        print("\n### Values not covered, and how far the experts' own leads agree on them\n")
        print("| record | value | ours (ms) | confidence | experts (ms) | experts' spread over leads, IQR (ms) "
              "| the same on the covered records: median / max |\n|---|---|---:|---:|---:|---:|---|")
        for rid, kind, ours, conf, ref, iqr in res["uncovered"]:
            cov = sorted(res["covered_spread"][kind])
            ref_s = f"{statistics.median(cov):.1f} / {cov[-1]:.1f}" if cov else "-"
            ours_s = f"{ours:.0f}" if ours is not None else "none found"
            conf_s = f"{conf:.2f}" if conf is not None else "-"
            iqr_s = f"{iqr:.1f}" if iqr is not None else "-"
            print(f"| {rid} | {kind} | {ours_s} | {conf_s} | {ref:g} | {iqr_s} | {ref_s} |")
    print(f"\nmillivolt numbers in accepted answers: {res['mv_cited']} (of which the contexts allow "
          f"{res['mv_citable']}: LUDB's amplitudes are normalised)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ludb", default=str(DEFAULT_LUDB))
    ap.add_argument("--keep", help="write the run here instead of a temp dir")
    ap.add_argument("--run", help="score this existing run folder (no new run)")
    ap.add_argument("--windows", default="", help="then the chain on these window starts (s), comma-separated, "
                    "each --window-length long (e.g. 0,0.2,0.4,0.6,0.8,1,1.2)")
    ap.add_argument("--window-length", type=float, default=8.8)
    ap.add_argument("--perturb", default="", help=f"then the chain on copies with artefacts added: any of "
                    f"{','.join(PERTURB)}, comma-separated")
    ap.add_argument("--seeds", type=int, default=2, help="artefact draws per --perturb kind")
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
    if args.windows:
        work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="cited-truth-windows-"))
        windows(ludb, work, [float(x) for x in args.windows.split(",")], args.window_length)
    if args.perturb:
        work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="cited-truth-perturb-"))
        perturbations(ludb, work, [x for x in args.perturb.split(",") if x], args.seeds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
