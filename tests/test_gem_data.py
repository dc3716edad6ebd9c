"""gem_model.data on real files: WFDB records read through the canonical reader (lead order by name,
500 Hz, 10 s) or GEM's way (--gem-compat), CLIP preprocessing without torchvision, and the scan that skips
bad items with reason codes."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import gem_helpers
import numpy as np
import pytest
import wfdb

from gem_model.config import preset
from gem_model.conversation import ConversationEncoder, byte_tokenizer
from gem_model.data import Roots, load_image, read_ecg, read_items, run_layout, scan, skip_counts
from pipeline.record import LEADS, REASON_CODES, RecordError
from pipeline.sources import open_source

MIMIC_ORDER = ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]  # aVF before aVL


def write_record(folder: Path, name: str, signal_mv: np.ndarray, fs: int, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(name, fs=fs, units=["mV"] * len(names), sig_name=names, p_signal=signal_mv.T.astype(np.float64),
                fmt=["16"] * len(names), adc_gain=[1000.0] * len(names), baseline=[0] * len(names),
                write_dir=str(folder))


def lead_signals(n: int, fs: int) -> np.ndarray:
    """12 distinguishable leads: lead k is a sine of (k + 1) Hz with amplitude 0.1 (k + 1) mV."""
    t = np.arange(n) / fs
    return np.stack([0.1 * (k + 1) * np.sin(2 * np.pi * (k + 1) * t) for k in range(12)])


def test_canonical_reading_equals_the_pipelines_record():
    run = gem_helpers.chain_run()
    item = read_items(run / "instructions", "train")[0]
    _, roots = run_layout(run)
    ecg = read_ecg(roots.ecg, item["ecg"], item["id"])
    record = open_source("synthetic", roots.ecg).read(item["id"])
    assert ecg.shape == (12, 5000) and ecg.dtype == np.float32
    assert np.array_equal(ecg, record.signal_mv[:, :5000])


def test_leads_by_name_resampled_to_500_hz_padded_to_10_s_or_gems_file_order(tmp_path):
    sig = lead_signals(2500, 250)       # 10 s at 250 Hz, MIMIC's channel order
    mimic_like = sig[[LEADS.index(n) for n in MIMIC_ORDER]]
    write_record(tmp_path, "m250", mimic_like, 250, MIMIC_ORDER)
    ours = read_ecg(tmp_path, "m250", "m250")
    assert ours.shape == (12, 5000)
    truth = lead_signals(5000, 500)
    # by name: aVL (index 4) is the 5 Hz, 0.5 mV lead wherever the file put it; resampled to 500 Hz
    for k in range(12):
        assert np.corrcoef(ours[k, 250:-250], truth[k, 250:-250])[0, 1] > 0.999, LEADS[k]
    assert abs(np.ptp(ours[4]) - 1.0) < 0.02
    gem = read_ecg(tmp_path, "m250", "m250", gem_compat=True)
    assert gem.shape == (12, 5000)
    assert np.allclose(gem[4, :2500], mimic_like[4], atol=1e-3)     # file order: aVF sits at index 4
    assert np.all(gem[:, 2500:] == 0)                                 # no resampling: zero-padded

    write_record(tmp_path, "short", lead_signals(4000, 500), 500, list(LEADS))   # 8 s
    short = read_ecg(tmp_path, "short", "short")
    assert np.all(short[:, 4000:] == 0) and np.abs(short[:, :4000]).max() > 0.1


def test_non_finite_samples_fail_our_way_and_become_zero_gems_way(tmp_path):
    sig = lead_signals(5000, 500)
    write_record(tmp_path, "nan", sig, 500, list(LEADS))
    # wfdb writes NaN as the format's missing value; put one into the file
    raw = np.fromfile(tmp_path / "nan.dat", dtype="<i2").reshape(-1, 12)
    raw[100, 3] = -32768
    raw.tofile(tmp_path / "nan.dat")
    with pytest.raises(RecordError) as info:
        read_ecg(tmp_path, "nan", "nan")
    assert info.value.code == "non_finite"
    gem = read_ecg(tmp_path, "nan", "nan", gem_compat=True)
    assert gem[3, 100] == 0 and np.isfinite(gem).all()


def test_image_crop_is_clips_own_preprocessing_and_pad_keeps_the_whole_page():
    from PIL import Image
    from transformers import CLIPImageProcessor

    run = gem_helpers.chain_run()
    rel = read_items(run / "instructions", "train")[0]["image"]
    ours = load_image(run, rel, "x", 336, "crop")
    with Image.open(run / rel) as im:
        # the settings of openai/clip-vit-large-patch14-336's preprocessor_config.json
        processor = CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
        clip = processor(images=im.convert("RGB"), return_tensors="np")["pixel_values"][0]
    assert ours.shape == clip.shape == (3, 336, 336)
    assert np.abs(ours - clip).max() < 1e-5
    padded = load_image(run, rel, "x", 336, "pad")
    # a 440 x 340 page: pad adds rows of CLIP's mean colour (0 after normalisation) above and below it
    assert np.abs(padded[:, :20]).max() < 0.02 and np.abs(padded[:, -20:]).max() < 0.02
    assert np.abs(padded[:, 168]).max() > 0.5
    with pytest.raises(RecordError) as info:
        load_image(run, "images/none.png", "x", 56)
    assert info.value.code == "missing_file"


def test_scan_skips_every_kind_of_bad_item_with_its_reason(tmp_path):
    run = gem_helpers.copy_run(tmp_path)
    expected = gem_helpers.break_run(run)
    instructions, roots = run_layout(run)
    items = read_items(instructions, "train")
    cfg = preset("tiny")
    encoder = ConversationEncoder(byte_tokenizer(), cfg.data.template, cfg.data.system)
    examples, skips = scan(items, encoder, cfg.data, roots, cfg.model.mm_tokens, 5000)
    got = {s.id: (s.reason if s.part == "item" else f"{s.reason} ({s.part})") for s in skips}
    dup = items[-1]["id"]
    expected[dup] = expected.pop("dup")
    assert got == expected
    assert all(s.reason in REASON_CODES for s in skips)
    # the first of two items with one id is kept, the second skipped
    assert sorted(e.id for e in examples) == sorted({it["id"] for it in items} - (set(expected) - {dup}))
    assert len(examples) + len(skips) == len(items)
    assert sum(skip_counts(skips).values()) == len(expected)


def test_scan_truncates_long_answers_and_skips_what_cannot_fit():
    run = gem_helpers.chain_run()
    _, roots = run_layout(run)
    items = read_items(run / "instructions", "train")[:2]
    cfg = preset("tiny")
    encoder = ConversationEncoder(byte_tokenizer(), cfg.data.template, cfg.data.system)
    full = encoder.encode([("human", items[0]["conversations"][0]["value"]),
                           ("gpt", items[0]["conversations"][1]["value"])])
    prompt_len = next(i for i, lab in enumerate(full.labels) if lab != -100)
    M = cfg.model.mm_tokens
    cfg.data.max_len = prompt_len + M - 1 + 10      # room for 10 answer tokens
    examples, skips = scan(items[:1], encoder, cfg.data, roots, M, 5000)
    assert not skips and len(examples[0].ids) == prompt_len + 10
    assert (examples[0].labels != -100).sum() == 10 and -200 in examples[0].ids
    cfg.data.max_len = prompt_len + M - 1          # no answer token left
    examples, skips = scan(items[:1], encoder, cfg.data, roots, M, 5000)
    assert not examples and skips[0].reason == "too_long"


def test_text_only_items_need_no_media_and_items_without_roots_are_explained():
    cfg = preset("tiny")
    encoder = ConversationEncoder(byte_tokenizer(), cfg.data.template, cfg.data.system)
    text_only = {"id": "t1", "conversations": [{"from": "human", "value": "What is a P wave?"},
                                               {"from": "gpt", "value": "Atrial depolarisation."}]}
    with_media = {"id": "m1", "ecg": "records500/x", "image": "images/x.png",
                  "conversations": [{"from": "human", "value": "<image>\nRead."}, {"from": "gpt", "value": "Normal."}]}
    examples, skips = scan([text_only, with_media], encoder, cfg.data, Roots(ecg=None, image=Path(".")),
                           cfg.model.mm_tokens, 5000)
    assert [e.id for e in examples] == ["t1"] and -200 not in examples[0].ids
    assert skips[0].id == "m1" and skips[0].reason == "missing_file" and "--ecg-root" in skips[0].detail


def test_run_layout_finds_the_data_root_of_a_moved_run(tmp_path, monkeypatch):
    run = gem_helpers.copy_run(tmp_path)
    doc = json.loads((run / "run.json").read_text())
    doc["paths"]["data_root"] = "outputs/elsewhere/synthetic"     # relative to wherever `run` was started
    (run / "run.json").write_text(json.dumps(doc))
    monkeypatch.chdir(tmp_path)
    _, roots = run_layout(run)
    assert roots.ecg == (run / "synthetic").resolve() and roots.image == run
    shutil.rmtree(run / "synthetic")
    assert run_layout(run)[1].ecg is None
