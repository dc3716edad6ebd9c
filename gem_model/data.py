"""The instruction set as model inputs: GEM-format items -> token ids, labels, ECG and image tensors.

Inputs: a run folder's ``instructions/{train,test}-NNNNN.json`` shards (``pipeline/instructions.py``) or any
GEM-format JSON list (GEM's ``ECG_Grounding_30k.json``) with its roots:

- ``ecg`` is a WFDB path without extension, relative to the ECG root (the run's source data root). It is read
  through the project's canonical reader (``pipeline.sources.wfdb_common.read_wfdb_window``): the 12 leads by
  name in our standard order, mV, resampled to 500 Hz, the first 10 s (a shorter record is zero-padded).
  ``gem_compat`` reproduces GEM's loading instead (``wfdb.rdsamp``, channels in file order, no resampling,
  NaN -> 0, pad / crop to 5000): the released GEM-7B was trained that way (MIMIC lists aVF before aVL).
- ``image`` is a PNG path relative to the image root (the run folder). CLIP preprocessing is done here
  without torchvision: ``pad`` makes the page square with CLIP's mean colour first (LLaVA's expand2square;
  every lead of an 11 x 8.5 in page stays visible), ``crop`` is GEM's resize + centre crop, which cuts the
  page's outer columns; then bicubic resize to the tower's size and CLIP's mean / std.

Every item is checked once before training (``scan``): a malformed conversation, a missing or unreadable
image or ECG, or an answer that no longer fits ``max_len`` skips that item with a reason code
(``pipeline.record.REASON_CODES``), counted and listed, never a crash mid-epoch.
"""
from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from gem_model.config import CLIP_MEAN, CLIP_STD, DataConfig
from gem_model.conversation import IGNORE, IMAGE_PLACEHOLDER, ConversationEncoder, item_turns
from pipeline.record import ConfigError, RecordError, resolve_under


@dataclass
class Roots:
    ecg: Path | None      # WFDB data root
    image: Path | None    # folder the ``image`` paths are relative to


@dataclass
class Skip:
    id: str
    reason: str           # a pipeline.record.REASON_CODES key
    part: str             # "item", "ecg" or "image"
    detail: str


@dataclass
class Example:
    id: str
    ids: np.ndarray       # int64 token ids, one IMAGE_TOKEN_ID where the ECG + image go (or none: text only)
    labels: np.ndarray    # int64, IGNORE where not learned
    ecg: str | None
    image: str | None


# ------------------------------------------------------------------------------- where the data is
def run_layout(run: str | Path) -> tuple[Path, Roots]:
    """(instructions folder, roots) of a run folder written by ``ecg-grounding run``."""
    run = Path(run)
    instructions = run / "instructions"
    if not instructions.is_dir():
        raise ConfigError(f"{run} has no instructions/ folder: run `ecg-grounding run --out {run}` first")
    return instructions, Roots(ecg=_data_root(run), image=run)


def _data_root(run: Path) -> Path | None:
    """The run's source data root from ``run.json`` (written relative to where the run was started)."""
    doc_path = run / "run.json"
    if not doc_path.is_file():
        return None
    doc = json.loads(doc_path.read_text())
    root = (doc.get("paths") or {}).get("data_root") or doc.get("data_root")
    if not root:
        return None
    root = Path(root)
    for cand in ([root] if root.is_absolute() else [Path.cwd() / root, run / root.name, run / root]):
        if cand.is_dir():
            return cand.resolve()
    return None


def read_items(data: str | Path, split: str | None = None) -> list[dict]:
    """Items of a GEM-format JSON file, or of a folder's ``{split}-*.json`` shards (every shard when
    ``split`` is None)."""
    data = Path(data)
    if data.is_dir():
        pattern = f"{split}-*.json" if split else "*-[0-9][0-9][0-9][0-9][0-9].json"
        files = sorted(data.glob(pattern))
    elif data.is_file():
        files = [data]
    else:
        raise ConfigError(f"{data} does not exist")
    items: list[dict] = []
    for f in files:
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{f} is not a readable JSON file: {exc}") from exc
        if not isinstance(doc, list):
            raise ConfigError(f"{f} must hold a JSON list of GEM items")
        items.extend(doc)
    return items


# ------------------------------------------------------------------------------------------ signals
def read_ecg(root: Path, rel: str, item_id: str, seq_len: int = 5000, gem_compat: bool = False,
             window_s: float = 10.0) -> np.ndarray:
    """(12, seq_len) float32 mV. Raises ``RecordError`` with the canonical reader's reason codes."""
    if gem_compat:
        return _read_ecg_gem(root, rel, item_id, seq_len)
    from pipeline.sources.wfdb_common import read_wfdb_window

    try:
        signal = read_wfdb_window(root, rel, item_id, window_s=window_s).signal_mv
    except RecordError as exc:
        if exc.code != "too_short":
            raise
        signal = read_wfdb_window(root, rel, item_id, window_s=None).signal_mv  # zero-padded below
    return _fit(signal, seq_len)


def _read_ecg_gem(root: Path, rel: str, item_id: str, seq_len: int) -> np.ndarray:
    import wfdb

    hea = resolve_under(root, f"{rel}.hea")
    if not hea.is_file():
        raise RecordError("missing_file", f"header {rel}.hea is missing", item_id)
    try:
        signal, _ = wfdb.rdsamp(str(hea)[: -len(".hea")])
    except Exception as exc:  # wfdb raises many kinds for bad files
        raise RecordError("corrupt_signal", f"cannot decode {rel}: {type(exc).__name__}: {exc}", item_id) from exc
    if signal.ndim != 2 or signal.shape[1] != 12:
        raise RecordError("missing_leads", f"{rel} has {signal.shape[-1]} channels; GEM reads 12 in file order",
                          item_id)
    return _fit(np.nan_to_num(signal.T, nan=0.0, posinf=0.0, neginf=0.0), seq_len)


def _fit(signal: np.ndarray, seq_len: int) -> np.ndarray:
    out = np.zeros((signal.shape[0], seq_len), dtype=np.float32)
    n = min(seq_len, signal.shape[1])
    out[:, :n] = signal[:, :n]
    return out


def load_image(root: Path, rel: str, item_id: str, size: int, mode: str = "pad") -> np.ndarray:
    """(3, size, size) float32, CLIP-normalised. Raises ``RecordError`` (``missing_file``, ``corrupt_image``)."""
    from PIL import Image

    path = resolve_under(root, rel)
    if not path.is_file():
        raise RecordError("missing_file", f"image {rel} is missing", item_id)
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError ... for bad files
        raise RecordError("corrupt_image", f"cannot decode {rel}: {type(exc).__name__}: {exc}", item_id) from exc
    w, h = im.size
    if mode == "pad":
        side = max(w, h)
        canvas = Image.new("RGB", (side, side), tuple(int(round(255 * m)) for m in CLIP_MEAN))
        canvas.paste(im, ((side - w) // 2, (side - h) // 2))
        im = canvas.resize((size, size), Image.Resampling.BICUBIC)
    elif mode == "crop":
        # the short side becomes ``size``, the long one int(size * long / short), as CLIPImageProcessor does
        new_w, new_h = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
        im = im.resize((new_w, new_h), Image.Resampling.BICUBIC)
        left, top = (im.width - size) // 2, (im.height - size) // 2
        im = im.crop((left, top, left + size, top + size))
    else:
        raise ValueError(f"unknown image mode {mode!r}; choose pad or crop")
    x = np.asarray(im, dtype=np.float32) / 255.0
    x = (x - np.asarray(CLIP_MEAN, dtype=np.float32)) / np.asarray(CLIP_STD, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def _check_image(root: Path, rel: str, item_id: str) -> None:
    """Cheap integrity check (PNG chunks and CRCs, no pixel decode)."""
    from PIL import Image

    path = resolve_under(root, rel)
    if not path.is_file():
        raise RecordError("missing_file", f"image {rel} is missing", item_id)
    try:
        with Image.open(path) as im:
            im.verify()
    except Exception as exc:
        raise RecordError("corrupt_image", f"cannot decode {rel}: {type(exc).__name__}: {exc}", item_id) from exc


# ---------------------------------------------------------------------------------------------- scan
def _check_media(job: tuple) -> Skip | None:
    """One item's ECG and image, read as training will read them (run in worker processes)."""
    item_id, ecg, image, roots, seq_len, gem_compat, window_s = job
    part = "image"
    try:
        _check_image(roots.image, image, item_id)
        part = "ecg"
        read_ecg(roots.ecg, ecg, item_id, seq_len, gem_compat, window_s)
    except RecordError as exc:
        return Skip(item_id, exc.code, part, exc.message)
    return None


def scan(items: list[dict], encoder: ConversationEncoder, data_cfg: DataConfig, roots: Roots, mm_tokens: int,
         seq_len: int, workers: int = 0, progress=None) -> tuple[list[Example], list[Skip]]:
    """Token ids of every usable item and the reason of every skipped one."""
    examples: list[Example] = []
    skips: list[Skip] = []
    media_jobs: list[tuple] = []
    seen: set[str] = set()
    for n, item in enumerate(items):
        item_id = str(item.get("id", "")) if isinstance(item, dict) else ""
        if not isinstance(item, dict) or not item_id:
            skips.append(Skip(item_id or f"#{n}", "bad_conversation", "item", "not a GEM item with an 'id'"))
            continue
        if item_id in seen:
            skips.append(Skip(item_id, "bad_conversation", "item", "duplicate id"))
            continue
        seen.add(item_id)
        turns, problem = item_turns(item)
        ecg, image = item.get("ecg"), item.get("image")
        has_mm = bool(turns) and IMAGE_PLACEHOLDER in turns[0][1]
        if problem is None and not has_mm and (ecg or image):
            problem = "the item has an ECG / image but no <image> placeholder to put them"
        if problem:
            skips.append(Skip(item_id, "bad_conversation", "item", problem))
            continue
        if has_mm:
            missing = [(p, root) for p, v, root in (("ecg", ecg, roots.ecg), ("image", image, roots.image))
                       if not isinstance(v, str) or not v or root is None]
            if missing:
                part, root = missing[0]
                why = f"the item names no {part}" if root is not None else \
                    f"no {part} root is known (pass --{part}-root)"
                skips.append(Skip(item_id, "missing_file", part, why))
                continue
        enc = encoder.encode(turns)
        ids, labels = enc.ids, enc.labels
        extra = enc.n_images * (mm_tokens - 1)
        if len(ids) + extra > data_cfg.max_len:   # cut the tail of the last answer, never the sentinel
            keep = data_cfg.max_len - extra
            ids, labels = ids[:max(keep, 0)], labels[:max(keep, 0)]
        if not any(x != IGNORE for x in labels) or (has_mm and enc.n_images and -200 not in ids):
            skips.append(Skip(item_id, "too_long", "item",
                              f"{len(enc.ids) + extra} tokens leave no answer token within max_len {data_cfg.max_len}"))
            continue
        examples.append(Example(item_id, np.asarray(ids, dtype=np.int64), np.asarray(labels, dtype=np.int64),
                                ecg if has_mm else None, image if has_mm else None))
        if has_mm:
            media_jobs.append((item_id, ecg, image, roots, seq_len, data_cfg.gem_compat, data_cfg.ecg_window_s))

    if workers > 1 and len(media_jobs) > 4 * workers:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(_check_media, media_jobs, chunksize=16))
    else:
        results = []
        for job in media_jobs:
            results.append(_check_media(job))
            if progress is not None:
                progress(1)
    bad = {s.id: s for s in results if s is not None}
    skips.extend(bad.values())
    return [e for e in examples if e.id not in bad], skips


def write_skips(path: Path, skips: list[Skip]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for s in skips:
            fh.write(json.dumps(asdict(s)) + "\n")


def skip_counts(skips: list[Skip]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in skips:
        key = s.reason if s.part == "item" else f"{s.reason} ({s.part})"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


# ------------------------------------------------------------------------------ dataset and batches
class GemDataset:
    """Map-style dataset over scanned examples; reads the ECG and image of one example when asked."""

    def __init__(self, examples: list[Example], roots: Roots, data_cfg: DataConfig, image_size: int,
                 seq_len: int = 5000, leads: int = 12):
        self.examples, self.roots, self.cfg = examples, roots, data_cfg
        self.image_size, self.seq_len, self.leads = image_size, seq_len, leads

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict:
        ex = self.examples[i]
        if ex.ecg is None:   # text only: zero inputs keep batches uniform (nothing is spliced for this row)
            ecg = np.zeros((self.leads, self.seq_len), dtype=np.float32)
            image = np.zeros((3, self.image_size, self.image_size), dtype=np.float32)
        else:
            # The scan read these files; failing now means they changed during training: say so loudly.
            ecg = read_ecg(self.roots.ecg, ex.ecg, ex.id, self.seq_len, self.cfg.gem_compat, self.cfg.ecg_window_s)
            image = load_image(self.roots.image, ex.image, ex.id, self.image_size, self.cfg.image_mode)
        return {"id": ex.id, "ids": ex.ids, "labels": ex.labels, "ecg": ecg, "image": image}


class Collator:
    """Right-pads ids (``pad_id``) and labels (IGNORE); lengths say which tokens are real."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, batch: list[dict]) -> dict:
        import torch

        L = max(len(b["ids"]) for b in batch)
        ids = torch.full((len(batch), L), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), L), IGNORE, dtype=torch.long)
        for i, b in enumerate(batch):
            ids[i, : len(b["ids"])] = torch.from_numpy(b["ids"])
            labels[i, : len(b["labels"])] = torch.from_numpy(b["labels"])
        return {"ids": [b["id"] for b in batch], "input_ids": ids, "labels": labels,
                "lengths": torch.tensor([len(b["ids"]) for b in batch], dtype=torch.long),
                "ecgs": torch.from_numpy(np.stack([b["ecg"] for b in batch])),
                "images": torch.from_numpy(np.stack([b["image"] for b in batch]))}
