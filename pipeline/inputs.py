"""A later stage's inputs, checked before they are used: Parquet files that are there, readable and the table
they claim to be, and tables that come from one run.

A truncated or corrupt Parquet (a copy cut short, a disk that filled up, a file that is not Parquet), or a
Parquet of the wrong kind (answers handed as the manifest), used to surface as a polars traceback from deep in
a stage. Here it becomes a ``TableError`` naming the file and the problem (the CLI prints one line, exit 2):
no record of such an input can be trusted, so no record is processed.

Run identity: ``features`` stamps its folder with the source it measured (``source.json``: source name, data
root, window). The prompts stage compares that stamp and the record ids with the manifest it is given, so
features of another run are an error naming the mismatch instead of prompts that pair one record's
measurements with another record's report.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import polars as pl

from pipeline.batch import tmp_sibling
from pipeline.record import TableError

STAMP_FILE = "source.json"


def _pq():
    import pyarrow.parquet as pq  # imported on use: pyarrow costs ~0.2 s at CLI start

    return pq


def check_parquet(path: str | Path, what: str, columns: Iterable[str] = ()) -> int:
    """Raise ``TableError`` unless ``path`` is a readable Parquet file holding ``columns``; return its row count.

    Reads the footer only (a truncated file has none); ``read_parquet_checked`` also catches damage inside.
    """
    path = Path(path)
    if not path.is_file():
        raise TableError("missing_input", f"{what} {path} is missing", path)
    try:
        meta = _pq().read_metadata(path)
        names = set(meta.schema.names)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError ... for a file that is not whole Parquet
        raise TableError("corrupt_parquet", f"{what} {path} is not a readable Parquet file (truncated or corrupt: "
                         f"{_short(exc)})", path) from exc
    missing = [c for c in columns if c not in names]
    if missing:
        raise TableError("wrong_table", f"{what} {path} has no {', '.join(missing)} column: is it the right file?",
                         path)
    return meta.num_rows


def parquet_readable(path: str | Path) -> bool:
    """True when ``path`` has a whole Parquet footer (what a finished shard must have)."""
    try:
        _pq().read_metadata(path)
        return True
    except Exception:  # noqa: BLE001 - any failure means: not a finished shard
        return False


def read_parquet_checked(path: str | Path, what: str, columns: Sequence[str] = (),
                         select: Sequence[str] | None = None,
                         record_ids: Sequence[str] | None = None) -> pl.DataFrame:
    """``pl.read_parquet`` of a stage input, with every failure a ``TableError`` naming ``path``. ``record_ids``:
    only those rows (a scan with the filter pushed down, so one chunk of a run never reads the whole table)."""
    check_parquet(path, what, columns)
    if select:
        names = set(_pq().read_schema(path).names)
        select = [c for c in select if c in names]
    try:
        if record_ids is not None:
            frame = pl.scan_parquet(path).filter(pl.col("record_id").is_in(list(record_ids)))
            return (frame.select(list(select)) if select else frame).collect()
        return pl.read_parquet(path, columns=list(select) if select else None)
    except Exception as exc:  # damage past the footer: a corrupt page, a bad dictionary
        raise TableError("corrupt_parquet", f"{what} {path} cannot be read (corrupt: {_short(exc)})",
                         path) from exc


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:160] + "...") if len(text) > 160 else text or type(exc).__name__


def features_files(features_dir: str | Path, table: str) -> list[Path]:
    """The Parquet files of ``table`` ('records' / 'beats') of a features folder: ``table.parquet`` or the shard
    folder ``table/*.parquet``; ``TableError('missing_input')`` when there are none."""
    root = Path(features_dir)
    single = root / f"{table}.parquet"
    if single.is_file():
        return [single]
    files = sorted((root / table).glob("*.parquet")) if (root / table).is_dir() else []
    if not files:
        if not root.is_dir():
            raise TableError("missing_input", f"features folder {root} is missing (no {table}.parquet or "
                             f"{table}/*.parquet)", root)
        raise TableError("missing_input", f"no {table}.parquet or {table}/*.parquet under {root}: is it a "
                         "features folder (`ecg-grounding features --out`)?", root)
    return files


def check_features(features_dir: str | Path) -> None:
    """Every records / beats file of a features folder is readable Parquet with the columns stages join on."""
    for table in ("records", "beats"):
        for f in features_files(features_dir, table):
            check_parquet(f, f"features {table} table", ("record_id",))


def read_features_table(features_dir: str | Path, table: str, record_ids: Sequence[str] | None = None) -> pl.DataFrame:
    """One features table (all shards) as a frame; ``TableError`` for a missing or damaged file. With
    ``record_ids`` only their rows are read (a scan with the filter pushed down: one chunk's contexts never load
    the whole run's beats)."""
    frames = [read_parquet_checked(f, f"features {table} table", ("record_id",), record_ids=record_ids)
              for f in features_files(features_dir, table)]
    return pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]


# ------------------------------------------------------------------------------------------- run identity
def source_stamp(source, folder: str | Path | None = None) -> dict:
    """What identifies the records an open source yields: its name, resolved root and window; with ``folder``
    (where the stamp lives) also the root relative to it, so a run folder moved with its data inside it
    (``run``'s synthetic tree) still matches."""
    root = Path(getattr(source, "root", ".")).resolve()
    stamp = {"source": getattr(source, "name", None), "root": str(root),
             "window_s": getattr(source, "window_s", None),
             "window_start_s": getattr(source, "window_start_s", None)}
    if folder is not None:
        stamp["root_relative"] = os.path.relpath(root, Path(folder).resolve())
    return stamp


def _same_root(have: dict, root: str | Path, folder: str | Path) -> bool:
    root = Path(root).resolve()
    if have.get("root") == str(root):
        return True
    rel = have.get("root_relative")
    return rel is not None and (Path(folder).resolve() / rel).resolve() == root


def _same_source(have: dict, want: dict, folder: str | Path) -> bool:
    return all(have.get(k) == want.get(k) for k in ("source", "window_s", "window_start_s")) and \
        _same_root(have, want["root"], folder)


def check_stamp(out_dir: str | Path, source) -> bool:
    """True when ``out_dir/source.json`` names ``source``; False when there is no stamp yet; ``TableError
    ('run_mismatch')`` when it names another source.

    A stage that skips finished shards must never skip shards measured from other data: re-running
    ``features --out F`` on another root used to keep F's old shards under the new run's name.
    """
    out = Path(out_dir)
    want = source_stamp(source, out)
    have = read_stamp(out)
    if have is None:
        return False
    if not _same_source(have, want, out):
        raise TableError("run_mismatch", f"{out} holds results of {_describe(have)}; this run reads "
                         f"{_describe(want)}: use another output folder, or delete {out}", out / STAMP_FILE)
    return True


def stamp_folder(out_dir: str | Path, source) -> None:
    """Write ``out_dir/source.json`` for ``source`` unless it is there (``check_stamp`` first)."""
    out = Path(out_dir)
    if check_stamp(out, source):
        return
    out.mkdir(parents=True, exist_ok=True)
    path = out / STAMP_FILE
    tmp = tmp_sibling(path)
    tmp.write_text(json.dumps(source_stamp(source, out), indent=2) + "\n")
    os.replace(tmp, path)


def copy_stamp(src_folder: str | Path, dst_folder: str | Path) -> None:
    """Carry the stamp of ``src_folder`` (features) to ``dst_folder`` (prompts made from them); a stamp of other
    data already there is replaced (the folder's tables are rewritten whole)."""
    stamp = read_stamp(src_folder)
    path = Path(dst_folder) / STAMP_FILE
    if stamp is None:
        path.unlink(missing_ok=True)
        return
    stamp = {k: v for k, v in stamp.items() if k != "root_relative"}  # relative to the features folder only
    tmp = tmp_sibling(path)
    tmp.write_text(json.dumps(stamp, indent=2) + "\n")
    os.replace(tmp, path)


def read_stamp(folder: str | Path) -> dict | None:
    path = Path(folder) / STAMP_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def _describe(stamp: dict) -> str:
    window = ""
    if stamp.get("window_start_s") or stamp.get("window_s") not in (None, 10.0):
        window = f" (window {stamp.get('window_start_s') or 0} s + {stamp.get('window_s')} s)"
    return f"source {stamp.get('source')} at {stamp.get('root')}{window}"


def check_same_run(features_dir: str | Path, record_ids: Sequence[str], *, manifest: pl.DataFrame | None = None,
                   manifest_path: str | Path | None = None, source: str | None = None, root=None) -> set[str]:
    """Raise ``TableError('run_mismatch')`` when the features at ``features_dir`` were not measured from the
    records the metadata describes (the manifest, or ``source`` at ``root``); return the measured ids that have
    no metadata (the caller records them per record).

    Checked: the features folder's stamp against the manifest's ``source`` / ``source_root`` (or the given
    source and root), and the overlap of record ids (none of the measured records in the manifest: another run).
    """
    stamp = read_stamp(features_dir)
    where = f"features {features_dir}"
    if manifest is not None and manifest.height:
        sources = sorted(set(manifest["source"].drop_nulls().to_list())) if "source" in manifest.columns else []
        roots = sorted(set(manifest["source_root"].drop_nulls().to_list())) if "source_root" in manifest.columns \
            else []
        if stamp is not None and sources and roots and (stamp.get("source") not in sources or not any(
                _same_root(stamp, r, features_dir) for r in roots)):
            raise TableError("run_mismatch", f"{where} were measured from {_describe(stamp)}, but the manifest "
                             f"{manifest_path} lists records of source {', '.join(sources)} at "
                             f"{', '.join(roots)}: they come from different runs", features_dir)
        known = set(manifest["record_id"].to_list())
        missing = {r for r in record_ids if r not in known}
        if record_ids and len(missing) == len(set(record_ids)):
            example = ", ".join(sorted(missing)[:3])
            raise TableError("run_mismatch", f"none of the {len(set(record_ids))} records measured in {where} "
                             f"(e.g. {example}) is in the manifest {manifest_path}: they come from different runs",
                             features_dir)
        return missing
    if source is not None and stamp is not None and root is not None:
        want = str(Path(root).resolve())
        if stamp.get("source") != source or not _same_root(stamp, root, features_dir):
            raise TableError("run_mismatch", f"{where} were measured from {_describe(stamp)}, not from source "
                             f"{source} at {want}", features_dir)
    return set()


# ----------------------------------------------------------------------------------- generate's contexts
def check_context_inputs(run_dir: Path, prompts_path: Path, features=None, manifest=None, images=None,
                         llm: str = "rules", required: bool = True) -> dict | None:
    """Where ``generate`` finds each record's measurements and metadata: ``features`` / ``manifest`` /
    ``images`` when given, else the run folder the prompts live in. Returns the paths for
    ``pipeline.context.load_contexts``, or None when they are not there and not ``required``.

    When ``required`` (the rules writer writes from them; the validator checks against them) and missing, raises
    ``TableError('missing_input')`` saying what is missing and which flag points at it: prompts outside a run
    folder used to give a warning and a silent failure per record.
    """
    feats = Path(features) if features is not None else run_dir / "features"
    man = Path(manifest) if manifest is not None else run_dir / "manifest.parquet"
    imgs = Path(images) if images is not None else run_dir / "images"
    missing = []
    if not man.is_file():
        missing.append(f"no manifest at {man} (give --manifest, ingest's manifest.parquet)")
    if not ((feats / "records.parquet").is_file() or (feats / "records").is_dir()):
        missing.append(f"no features folder at {feats} (give --features, the output of `ecg-grounding features`)")
    explicit = any(x is not None for x in (features, manifest, images))
    if images is not None and not imgs.is_dir():
        missing.append(f"no images folder at {imgs}")
    if missing:
        if not required and not explicit:  # nothing asked for, nothing needed
            return None
        why = "the rules writer writes from" if llm == "rules" else \
            "the validator checks each answer against (or pass --no-validate)"
        where = "" if features is not None and manifest is not None else \
            f"; the prompts {prompts_path} are not inside a run folder that has them"
        raise TableError("missing_input", f"--llm {llm}: {why} each record's measurements and metadata: "
                         f"{'; '.join(missing)}{where}", man if not man.is_file() else feats)
    check_features(feats)
    check_parquet(man, "manifest", ("record_id", "meta_json"))
    prompts_dir = prompts_path if prompts_path.is_dir() else prompts_path.parent
    made_from, measured_from = read_stamp(prompts_dir), read_stamp(feats)
    if made_from is not None and measured_from is not None and any(
            made_from.get(k) != measured_from.get(k) for k in ("source", "root", "window_s", "window_start_s")):
        raise TableError("run_mismatch", f"the prompts {prompts_path} describe records of {_describe(made_from)}, "
                         f"the features {feats} were measured from {_describe(measured_from)}: the prompts come "
                         "from another run", prompts_dir / STAMP_FILE)
    return {"features": feats, "manifest": man, "images": imgs if imgs.is_dir() else None}


def check_prompts_match(prompt_ids: Sequence[str], contexts: dict, paths: dict) -> None:
    """``TableError('run_mismatch')`` when none of the prompts' records has a context (prompts of one run,
    features and manifest of another); records missing only here and there fail one by one (``no_context``)."""
    wanted = set(prompt_ids)
    if wanted and not wanted & set(contexts):
        example = ", ".join(sorted(wanted)[:3])
        raise TableError("run_mismatch", f"none of the {len(wanted)} prompted records (e.g. {example}) is measured "
                         f"in {paths['features']} and listed in {paths['manifest']}: the prompts come from another "
                         "run", paths["manifest"])


def check_validate_inputs(answers, features, manifest, prompts=None, images=None) -> None:
    """``validate``'s inputs: readable tables of the right kind, from one run."""
    check_parquet(answers, "answers table", ("record_id", "answer"))
    check_features(features)
    man = read_parquet_checked(manifest, "manifest", ("record_id", "meta_json"),
                               select=["record_id", "source", "source_root"])
    if prompts is not None:
        check_parquet(prompts, "prompts table", ("record_id",))
    if images is not None and not Path(images).is_dir():
        raise TableError("missing_input", f"images folder {images} is missing", images)
    measured = read_features_table(features, "records").select("record_id")["record_id"].to_list()
    check_same_run(features, measured, manifest=man, manifest_path=manifest)
    answered = read_parquet_checked(answers, "answers table", select=["record_id"])["record_id"].unique().to_list()
    known = set(man["record_id"].to_list())
    if answered and not known & set(answered):
        example = ", ".join(sorted(answered)[:3])
        raise TableError("run_mismatch", f"none of the {len(answered)} answered records (e.g. {example}) is in the "
                         f"manifest {manifest}: the answers come from another run", answers)
