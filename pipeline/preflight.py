"""Pre-flight: every check of a command's settings, made before any stage reads a record or pays a provider.

Bad usage costs one line and exit code 2, never a traceback and never work already done: an unknown source, a
data root that is not there, a source table unusable as a whole, a chunk size of 0, a window of NaN seconds, an
``--llm`` spec no provider answers to, a paid provider without its API key, a ``--max-cost`` without a price.
(``run --llm opnai:gpt-4o`` used to be refused after five stages had run.)

The checks raise ``ConfigError`` (``TableError`` for a table); the argparse ``type=`` functions below are the
same checks for one option, so a bad number is refused while the command line is parsed. API keys are only
looked up, never printed.
"""
from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from pipeline.record import ConfigError, TableError

SOURCE_ROOT_HINT = {
    "synthetic": "a tree written by `ecg-grounding synth` (synthetic_database.csv, records500/)",
    "ptbxl": "a PTB-XL release root (ptbxl_database.csv, records500/)",
    "mimic": "a MIMIC-IV-ECG root (record_list.csv, machine_measurements.csv, files/)",
    "ludb": "a LUDB root (data/*.hea, ludb.csv)",
    "wfdb": "a folder of WFDB records (*.hea)",
}
PAID_PROVIDERS = ("openai", "deepseek")


# --------------------------------------------------------------------------------- one value at a time
def _number(text: str, kind: Callable[[str], float]) -> float:
    try:
        return kind(text)
    except (TypeError, ValueError):
        raise ValueError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None


def _arg(check: Callable[[str], object]) -> Callable[[str], object]:
    """An argparse ``type=`` from a check that raises ``ValueError`` with the reason."""
    def parse(text: str):
        try:
            return check(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    parse.__name__ = check.__name__
    return parse


def _positive_int(text: str) -> int:
    x = _number(text, int)
    if x < 1:
        raise ValueError(f"must be an integer >= 1, got {x}")
    return int(x)


def _nonneg_int(text: str) -> int:
    x = _number(text, int)
    if x < 0:
        raise ValueError(f"must be an integer >= 0, got {x}")
    return int(x)


def _finite(text: str) -> float:
    x = _number(text, float)
    if not math.isfinite(x):
        raise ValueError(f"must be a finite number, got {text}")
    return x


def _positive_float(text: str) -> float:
    x = _finite(text)
    if x <= 0:
        raise ValueError(f"must be a number > 0, got {text}")
    return x


def _nonneg_float(text: str) -> float:
    x = _finite(text)
    if x < 0:
        raise ValueError(f"must be a number >= 0, got {text}")
    return x


def _fraction(text: str) -> float:
    x = _finite(text)
    if not 0 <= x < 1:
        raise ValueError(f"must be a fraction in [0, 1), got {text}")
    return x


positive_int = _arg(_positive_int)
nonneg_int = _arg(_nonneg_int)
finite_float = _arg(_finite)
positive_float = _arg(_positive_float)
nonneg_float = _arg(_nonneg_float)
fraction = _arg(_fraction)


def check_value(name: str, value, check: Callable[[str], object]) -> None:
    """The argparse check of one option, on a value set in code (``RunConfig``, a flow parameter)."""
    if value is None:
        return
    try:
        check(str(value))
    except ValueError as exc:
        raise ConfigError(f"{name} {exc}") from None


# ------------------------------------------------------------------------------------------------ sources
def check_source_name(source: str) -> None:
    from pipeline.sources import SOURCE_NAMES

    if source not in SOURCE_NAMES:
        import difflib

        near = difflib.get_close_matches(source, SOURCE_NAMES, n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        raise ConfigError(f"unknown --source {source!r}{hint}: choose one of {', '.join(SOURCE_NAMES)}")


def check_window(window_s: float | None, window_start_s: float | None) -> None:
    check_value("--window-s", window_s, _positive_float)
    check_value("--window-start-s", window_start_s, _nonneg_float)


def source_options(source: str, window_s: float | None = None, window_start_s: float | None = None,
                   extra: dict | None = None) -> dict:
    """The source options a command's flags ask for, checked (the synthetic source takes none: its records are
    generated 10 s long)."""
    options = dict(extra or {})
    if window_s is not None:
        options["window_s"] = window_s
    if window_start_s is not None:
        options["window_start_s"] = window_start_s
    check_window(options.get("window_s"), options.get("window_start_s"))
    if source == "synthetic" and options:
        flags = ", ".join("--" + k.replace("_", "-") if k in ("window_s", "window_start_s") else f"--option {k}"
                          for k in options)
        raise ConfigError(f"--source synthetic takes no source options ({flags}): its records are 10 s at 500 Hz")
    return options


def check_root(source: str, root: str | Path | None) -> Path:
    """``root`` exists and is a folder; ``ConfigError`` naming what a root of ``source`` holds otherwise."""
    check_source_name(source)
    if root is None or str(root) == "":
        raise ConfigError(f"--root is required for source {source!r}: {SOURCE_ROOT_HINT[source]}")
    path = Path(root)
    if not path.exists():
        raise ConfigError(f"--root {root} does not exist (want {SOURCE_ROOT_HINT[source]})")
    if not path.is_dir():
        raise ConfigError(f"--root {root} is not a folder (want {SOURCE_ROOT_HINT[source]})")
    return path


def open_checked(source: str, root: str | Path | None, **options):
    """Open ``source`` on ``root`` and list its ids, so that a table unusable as a whole (PTB-XL's csv without
    ``ecg_id``, MIMIC's ``record_list.csv`` without ``study_id``) or an empty source stops the command before
    any stage: ``TableError`` / ``ConfigError``. Returns (source, ids)."""
    from pipeline.sources import open_source

    path = check_root(source, root)
    try:
        src = open_source(source, path, **options)
        ids = list(src.ids())
    except (TableError, ConfigError):
        raise
    except TypeError as exc:  # an option the source does not take
        raise ConfigError(f"--source {source}: {exc}") from exc
    except (OSError, ValueError) as exc:
        raise TableError("unusable_table", f"source {source} at {root}: {exc}", root) from exc
    except Exception as exc:  # a source that raises RecordError or worse for its whole table
        raise TableError("unusable_table", f"source {source} at {root} cannot be opened: "
                         f"{type(exc).__name__}: {exc}", root) from exc
    if not ids:
        raise TableError("unusable_table", f"source {source} at {root} lists no records "
                         f"(want {SOURCE_ROOT_HINT[source]})", root)
    return src, ids


def check_out(out: str | Path, what: str = "--out") -> Path:
    """An output folder that is not a file and can be created where it is asked for."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {out} is a file, not a folder")
    parent = next((p for p in [path, *path.parents] if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ConfigError(f"{what} {out}: {parent} is a file, not a folder")
    if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {out}: {parent} is not writable")
    return path


# ------------------------------------------------------------------------------------------------------ LLM
def check_llm(llm: str, base_url: str | None = None, api_key_secret: str | None = None, *, batch: bool = False,
              max_cost: float | None = None, price_table: str | Path | None = None,
              variant: str | None = None) -> None:
    """The ``--llm`` spec parses (the provider parser of ``pipeline.llm``), a paid provider has its API key,
    ``--base-url`` is an http(s) URL, ``--batch`` is asked of a provider that has a Batch API, and
    ``--max-cost`` has a price to count against. Nothing is sent."""
    from pipeline.llm.providers import KEY_ENV, BackendSpec

    spec = BackendSpec.parse(llm, base_url)  # LLMConfigError (a ConfigError) with the accepted forms
    if base_url:
        url = urlparse(base_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ConfigError(f"--base-url {base_url!r} is not an http(s) URL (e.g. http://127.0.0.1:8000/v1)")
    if spec.provider in PAID_PROVIDERS and not api_key_secret:
        env = KEY_ENV[spec.provider]
        if not (os.environ.get(env) or "").strip():
            raise ConfigError(f"--llm {llm} needs an API key: {env} is not set (keys are read from the "
                              "environment only; `generate` also takes a Prefect Secret block, --api-key-secret)")
    if spec.provider != "rules" and api_key_secret:
        from pipeline.llm.providers import resolve_api_key

        try:  # the block must exist and hold a key now, not after four stages
            key = resolve_api_key(spec.provider, api_key_secret)
        except Exception as exc:  # a missing / unreadable Secret block, Prefect not installed
            raise ConfigError(f"cannot read the API key from Secret block {api_key_secret!r}: "
                              f"{type(exc).__name__}: {exc}") from None
        if not key and spec.provider in PAID_PROVIDERS:
            raise ConfigError(f"Secret block {api_key_secret!r} holds no API key for {spec.provider}")
    if variant is not None and variant not in ("multimodal", "text", "json", "all"):
        raise ConfigError(f"--variant {variant!r}: choose multimodal, text, json or all")
    if batch and spec.provider != "openai":
        raise ConfigError(f"--batch needs the OpenAI Batch API; {spec.provider} has none")
    check_value("--max-cost", max_cost, _nonneg_float)
    if max_cost is not None and spec.provider != "rules":
        from pipeline.llm.pricing import PriceTable

        try:
            prices = PriceTable.load(price_table)
        except Exception as exc:  # a price file that cannot be read or parsed
            raise ConfigError(f"--price-table {price_table}: {type(exc).__name__}: {exc}") from exc
        if prices.price(spec.provider, spec.model) is None:
            raise ConfigError(f"--max-cost needs a price for {spec.provider}:{spec.model}: add it with "
                              "--price-table")


# ------------------------------------------------------------------------------------------------------ run
def check_run_config(cfg) -> list[str] | None:
    """Everything ``run`` needs, checked before its first stage (``pipeline.run_all.RunConfig``). Returns the
    source's ids when the data root is given (None when ``run`` generates a synthetic tree)."""
    from pipeline.render import LAYOUTS

    check_source_name(cfg.source)
    for name, value, check in (("--n", cfg.n, _positive_int), ("--seed", cfg.seed, _nonneg_int),
                               ("--dpi", cfg.dpi, _positive_int), ("--budget", cfg.budget, _positive_int),
                               ("--concurrency", cfg.concurrency, _positive_int),
                               ("--max-attempts", cfg.max_attempts, _positive_int),
                               ("--chunk-size", cfg.chunk_size, _positive_int),
                               ("--test-fraction", cfg.test_fraction, _fraction)):
        check_value(name, value, check)
    if cfg.layout not in LAYOUTS:
        raise ConfigError(f"--layout {cfg.layout!r}: choose one of {', '.join(LAYOUTS)}")
    if cfg.variant not in (None, "multimodal", "text", "json"):
        raise ConfigError(f"--variant {cfg.variant!r}: choose multimodal, text or json")
    check_llm(cfg.llm, cfg.base_url, getattr(cfg, "api_key_secret", None), max_cost=cfg.max_cost,
              price_table=getattr(cfg, "price_table", None))
    check_out(cfg.out)
    options = dict(cfg.source_options or {})
    source_options(cfg.source, options.pop("window_s", None), options.pop("window_start_s", None), options)
    if cfg.root is None:
        if cfg.source != "synthetic":
            raise ConfigError(f"--root is required for source {cfg.source!r}: {SOURCE_ROOT_HINT[cfg.source]}")
        return None
    _, ids = open_checked(cfg.source, cfg.root, **(cfg.source_options or {}))
    return ids
