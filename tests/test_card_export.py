"""After a run: run.json, the dataset card (README.md front matter; card.html rendered in headless Chromium with
its plots) and `export` (every accepted record, paths resolve, PTB's s0010_re exported as 12 x 5000 at 500 Hz).

One real run over a WFDB folder built from ../shared: a PTB-XL record (canonical as it is), PTB's s0010_re
(1000 Hz, 15 channels, 38.4 s) and a broken header, so the run has a failed record and exits 1.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import wfdb

from conftest import shared_path
from pipeline.card import parse_front_matter
from pipeline.record import LEADS

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "pipeline.cli"]


def _cli(*args: str, check: int | None = 0) -> subprocess.CompletedProcess:
    r = subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=REPO, timeout=600,
                       env={**os.environ, "ECG_GROUNDING_VERBOSITY": "0"})
    if check is not None:
        assert r.returncode == check, f"exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def wfdb_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("card")
    src = base / "src"
    (src / "ptb").mkdir(parents=True)
    for f in shared_path("data", "ptbdb").glob("s0010_re.*"):
        shutil.copy(f, src / "ptb" / f.name)
    for ext in ("hea", "dat"):
        shutil.copy(shared_path("data", "ptbxl", "records500", "06000", f"06000_hr.{ext}"), src)
    (src / "broken.hea").write_text("broken 12 500 5000\n")  # declares no signal lines: corrupt_header
    run = base / "run"
    r = _cli("run", "--source", "wfdb", "--root", str(src), "--out", str(run), check=1)
    return {"src": src, "run": run, "stdout": r.stdout}


def test_run_json_records_what_ran(wfdb_run):
    info = json.loads((wfdb_run["run"] / "run.json").read_text())
    assert info["status"] == "records_failed" and info["exit_code"] == 1 and info["records_failed"] == 1
    assert info["stages"]["ingest"]["failed_ids"] == ["broken"]
    assert info["stages"]["ingest"]["ok"] == 2 and info["stages"]["validate"]["records"] == 2
    assert info["config"]["source"] == "wfdb" and info["config"]["root"] == str(wfdb_run["src"].resolve())
    assert info["started_at"] <= info["ended_at"] and info["duration_s"] > 0
    sw = info["software"]
    assert sw["version"] and sw["python"] and sw["packages"]["polars"] and sw["packages"]["numpy"]
    assert sw["git"] is None or len(sw["git"]["commit"]) == 40  # a checkout here, a wheel elsewhere
    assert info["host"]["cpu_count"] >= 1 and info["host"]["hostname"]
    assert info["paths"]["data_root"] == str(wfdb_run["src"].resolve())


def test_run_json_never_holds_a_secret(tmp_path, monkeypatch):
    from pipeline import runinfo

    monkeypatch.setenv("ECG_GROUNDING_API_KEY", "sk-never-written")
    monkeypatch.setenv("ECG_GROUNDING_P_ONSET_FIT", "all")
    info = runinfo.build_run_info({"llm": "rules", "api_key": "sk-never-written"}, runinfo.utc_now(),
                                  runinfo.utc_now(), 0.1, {})
    text = json.dumps(info)
    assert "sk-never-written" not in text
    assert info["config"]["environment"] == {"ECG_GROUNDING_P_ONSET_FIT": "all"}


def test_dataset_card_front_matter(wfdb_run):
    card = (wfdb_run["run"] / "instructions" / "README.md").read_text()
    fm = parse_front_matter(card)
    assert fm["license"] == "other"  # a WFDB folder: its dataset's licence, which the card cannot know
    assert "wfdb:" in fm["license_details"]
    assert fm["task_categories"] == ["image-text-to-text", "visual-question-answering"]
    assert fm["size_categories"] == ["n<1K"]
    assert fm["configs"][0]["data_files"] == [{"split": "train", "path": "train-*.json"}]
    summary = json.loads((wfdb_run["run"] / "instructions" / "summary.json").read_text())
    assert fm["dataset_info"]["splits"] == [{"name": "train", "num_examples": summary["splits"]["train"]}]
    for heading in ("## Sources", "## Generation method", "## Validation", "## Known limits", "## Citation"):
        assert heading in card
    assert "NeurIPS 2025" in card


def test_front_matter_licences_per_source(tmp_path):
    from collections import Counter

    from pipeline.card import CardData, front_matter, size_category

    data = CardData(summary={"splits": {"train": 1500, "test": 0}}, sources=Counter({"ptbxl": 3, "ludb": 2}),
                    shards={"train": ["train-00000.json"], "test": []})
    fm = front_matter(data)
    assert fm["license"] == ["cc-by-4.0", "odc-by"]
    assert fm["license_details"] == "ludb: ODC-By 1.0; ptbxl: CC BY 4.0"
    assert fm["size_categories"] == ["1K<n<10K"] and fm["source_datasets"] == ["ludb", "ptbxl"]
    assert [size_category(n) for n in (0, 999, 1000, 99_999, 100_000)] == \
        ["n<1K", "n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M"]


# ------------------------------------------------------------------------------------------ Chromium
def _chromium() -> str:
    """Debian's chromium; installed with apt when missing (as `make test` does), else the test fails under CI."""
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    if shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium",
                       shell=True, capture_output=True, timeout=900)
        if shutil.which("chromium"):
            return shutil.which("chromium")
    if os.environ.get("CI"):
        pytest.fail("chromium is missing and could not be installed (apt-get install chromium)")
    pytest.skip("chromium is missing")


def _chromium_args(profile: Path) -> list[str]:
    # the closed network refuses Chromium's own connections unless every background service is off
    return [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}"]


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("synrun") / "run"
    _cli("run", "--n", "16", "--out", str(run))
    return run


def test_card_renders_in_chromium_with_its_plots(synthetic_run, tmp_path):
    card = synthetic_run / "instructions" / "card.html"
    # a copy of the card with a probe that reports, after load, what Chromium decoded
    probe = tmp_path / "probe.html"
    probe.write_text(card.read_text() + """
<script>
window.addEventListener('load', () => {
  const imgs = [...document.images].map(i => `${i.id || i.alt}=${i.naturalWidth}x${i.naturalHeight}`);
  const p = document.createElement('pre'); p.id = 'probe';
  p.textContent = JSON.stringify({imgs, rows: document.querySelectorAll('#diagnoses ~ table tr').length,
                                  examples: document.querySelectorAll('.example').length});
  document.body.appendChild(p);
});
</script>""")
    dom = subprocess.run([*_chromium_args(tmp_path / "profile1"), "--virtual-time-budget=5000", "--dump-dom",
                          probe.as_uri()], capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    got = json.loads(dom.stdout.split('<pre id="probe">')[1].split("</pre>")[0].replace("&quot;", '"'))
    sizes = dict(x.rsplit("=", 1) for x in got["imgs"])
    w, h = (int(v) for v in sizes["histograms"].split("x"))
    assert w > 800 and h > 400, sizes  # the HR/PR/QRS/QT/QTc/axis figure decoded
    ecg_imgs = [v for k, v in sizes.items() if k.startswith("ECG ")]
    assert len(ecg_imgs) == 3 and all(int(v.split("x")[0]) >= 600 for v in ecg_imgs), sizes
    assert got["examples"] == 3

    shot = tmp_path / "card.png"
    r = subprocess.run([*_chromium_args(tmp_path / "profile2"), "--hide-scrollbars", "--window-size=1200,4000",
                        f"--screenshot={shot}", card.as_uri()], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0 and shot.is_file(), r.stderr[-2000:]
    from PIL import Image

    px = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert px.shape[:2] == (4000, 1200)
    blue = (abs(px[..., 0] - 0x3B) < 12) & (abs(px[..., 1] - 0x6F) < 12) & (abs(px[..., 2] - 0xD8) < 12)
    assert blue.sum() > 20_000, blue.sum()  # acceptance bars and histogram bars, drawn
    rows_with_ink = (px.min(axis=2) < 128).any(axis=1).sum()
    assert rows_with_ink > 1500  # text, tables, plots and ECG traces down the page, not a blank page


# --------------------------------------------------------------------------------------------- export
def _accepted(run: Path) -> list[dict]:
    items = []
    for shard in sorted((run / "instructions").glob("*-*.json")):
        items += json.loads(shard.read_text())
    return items


def test_export_gem_round_trips(wfdb_run, tmp_path):
    run, src = wfdb_run["run"], wfdb_run["src"]
    out = tmp_path / "gem.json"
    r = _cli("export", "--run", str(run), "--out", str(out), "--ecg-root", str(src), "--json")
    summary = json.loads(r.stdout)
    items = json.loads(out.read_text())
    accepted = _accepted(run)
    assert sorted(x["id"] for x in items) == sorted(x["id"] for x in accepted) and len(items) == 2
    assert summary["ecg_in_place"] == 1 and summary["ecg_written"] == 1 and not summary["failed"]
    by_id = {x["id"]: x for x in items}
    for item in items:
        assert list(item) == ["id", "ecg", "image", "conversations", "machine_measurements", "report"]
        assert (run / item["image"]).is_file()  # image root defaults to the run folder
        assert (src / f"{item['ecg']}.hea").is_file()
        orig = next(a for a in accepted if a["id"] == item["id"])
        assert item["conversations"] == orig["conversations"] and item["report"] == orig["report"]

    # PTB-XL's record is canonical: pointed at in place
    assert by_id["06000_hr"]["ecg"] == "06000_hr"
    # PTB's s0010_re (1000 Hz, 15 channels, 38.4 s): the canonical 10-s window, 12 x 5000 at 500 Hz
    ptb = by_id["ptb__s0010_re"]
    assert ptb["ecg"] == "ecg-grounding-canonical/wfdb/ptb__s0010_re"
    sig, fields = wfdb.rdsamp(str(src / ptb["ecg"]))  # GEM's own read
    assert sig.shape == (5000, 12) and fields["fs"] == 500 and fields["sig_name"] == list(LEADS)
    from pipeline.sources import open_source

    canonical = open_source("wfdb", src).read("ptb__s0010_re").signal_mv
    assert np.max(np.abs(sig.T - canonical)) <= 0.0006  # 1 uV quantisation
    # and it is that record: the first 10 s of the raw 1000-Hz lead II, every other sample
    raw, raw_fields = wfdb.rdsamp(str(src / "ptb" / "s0010_re"), sampto=10_000)
    ii = [n.lower() for n in raw_fields["sig_name"]].index("ii")
    assert np.corrcoef(raw[::2, ii], sig[:, 1])[0, 1] > 0.99
    # a re-run of the source does not take the export's copies for new records
    assert open_source("wfdb", src).ids() == ["06000_hr", "broken", "ptb__s0010_re"]


def test_export_roots_and_llava(wfdb_run, tmp_path):
    run = wfdb_run["run"]
    ecg_root, image_root = tmp_path / "ecg", tmp_path / "img"
    out = tmp_path / "gem.json"
    _cli("export", "--run", str(run), "--out", str(out), "--ecg-root", str(ecg_root), "--image-root",
         str(image_root))
    items = json.loads(out.read_text())
    # neither the source files nor the images lie under these roots: canonical copies and image copies
    for item in items:
        assert (ecg_root / f"{item['ecg']}.hea").is_file() and (image_root / item["image"]).is_file()
        sig, fields = wfdb.rdsamp(str(ecg_root / item["ecg"]))
        assert sig.shape == (5000, 12) and fields["fs"] == 500
    llava = tmp_path / "llava.json"
    _cli("export", "--run", str(run), "--out", str(llava), "--format", "llava")
    ll = json.loads(llava.read_text())
    assert [list(x) for x in ll] == [["id", "image", "conversations"]] * 2
    assert all((run / x["image"]).is_file() for x in ll)


def test_export_synthetic_defaults_and_bad_usage(synthetic_run, tmp_path):
    out = tmp_path / "all.json"
    r = _cli("export", "--run", str(synthetic_run), "--out", str(out))
    items = json.loads(out.read_text())
    assert len(items) == len(_accepted(synthetic_run)) == 16
    root = json.loads((synthetic_run / "run.json").read_text())["paths"]["data_root"]
    assert all(Path(root, f"{x['ecg']}.hea").is_file() for x in items)  # synthetic records: used in place
    assert "16 source records in place, 0 canonical" in r.stdout
    test_only = tmp_path / "test.json"
    _cli("export", "--run", str(synthetic_run), "--out", str(test_only), "--split", "test")
    summary = json.loads((synthetic_run / "instructions" / "summary.json").read_text())
    assert len(json.loads(test_only.read_text())) == summary["splits"]["test"]
    bad = _cli("export", "--run", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.json"), check=2)
    assert "no instruction shards" in bad.stderr
