"""``card.html``: the instruction set on one self-contained page (plots and example images embedded as data
URIs, so the file can be mailed, attached or published on its own).

Sections: counts and splits by patient, sources, acceptance and rejection reasons, per-diagnosis counts and
acceptance, histograms of HR / PR / QRS / QT / QTc / axis (all measured records vs. those in the set), tokens
and cost per model, three example records with their image and answer.
"""
from __future__ import annotations

import base64
import html
import io
import math

import polars as pl

from pipeline.card import HIST_COLUMNS, SOURCE_LICENCES, CardData, _pct

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#222;
     padding:0 1em;line-height:1.45}
h1{margin-bottom:.2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
.tiles{display:flex;flex-wrap:wrap;gap:.8em;margin:1em 0}
.tile{background:#f4f6fa;border-radius:8px;padding:.7em 1.1em;min-width:130px}
.tile b{display:block;font-size:1.6em}
table{border-collapse:collapse;margin:.6em 0} td,th{border:1px solid #ddd;padding:.3em .7em;text-align:left}
td.n,th.n{text-align:right} th{background:#f4f6fa}
.bar{display:inline-block;height:.8em;background:#3b6fd8;vertical-align:middle}
.bar.bad{background:#d8593b}
.example{border:1px solid #ddd;border-radius:8px;padding:1em;margin:1em 0}
.example img{width:100%;border:1px solid #eee}
.q{color:#555;font-style:italic} .a{background:#f8f8f4;padding:.6em;border-left:4px solid #3b6fd8}
.muted{color:#777;font-size:.9em}
"""


def _e(x) -> str:
    return html.escape("" if x is None else str(x))


def _png_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def histograms_png(measured: pl.DataFrame | None) -> str | None:
    """One PNG (data URI) with a histogram per measurement: all measured records vs. those in the set."""
    if measured is None or not measured.height:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [(c, label, unit) for c, label, unit in HIST_COLUMNS if c in measured.columns]
    ncol = 3
    nrow = math.ceil(len(cols) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.0 * nrow), squeeze=False)
    for ax in axes.flat[len(cols):]:
        ax.set_visible(False)
    for ax, (col, label, unit) in zip(axes.flat, cols):
        all_v = measured[col].drop_nulls().drop_nans().to_numpy()
        in_v = measured.filter(pl.col("in_set"))[col].drop_nulls().drop_nans().to_numpy()
        if len(all_v) == 0:
            ax.set_title(f"{label}: not measured", fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        bins = min(30, max(5, int(math.sqrt(len(all_v))) + 1))
        edges = ax.hist(all_v, bins=bins, color="#c9d3e6", label=f"measured ({len(all_v)})")[1]
        if len(in_v):
            ax.hist(in_v, bins=edges, color="#3b6fd8", label=f"in the set ({len(in_v)})")
        med = float(sorted(all_v)[len(all_v) // 2])
        ax.set_title(f"{label} ({unit}), median {med:.0f}", fontsize=10)
        ax.legend(fontsize=7, frameon=False)
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    uri = _png_uri(fig)
    plt.close(fig)
    return uri


def _thumb_uri(path, width_px: int = 900) -> str | None:
    """The example's PNG page shrunk to ``width_px`` as an embedded JPEG (a 200-dpi page is ~1 MB)."""
    if path is None:
        return None
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.width > width_px:
                im = im.resize((width_px, round(im.height * width_px / im.width)), Image.LANCZOS)
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=80)
    except OSError:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _bar(frac: float | None, bad: bool = False, width_px: int = 120) -> str:
    if frac is None:
        return ""
    return f'<span class="bar{" bad" if bad else ""}" style="width:{max(1, round(frac * width_px))}px"></span>'


def _table(head: list[str], rows: list[list], numeric: set[int] = frozenset()) -> str:
    th = "".join(f'<th class="{"n" if i in numeric else ""}">{_e(h)}</th>' for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f'<td class="{"n" if i in numeric else ""}">{c}</td>' for i, c in enumerate(r))
                   + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def card_html(data: CardData) -> str:
    s = data.summary
    splits, patients = s.get("splits") or {}, s.get("patients") or {}
    n_items = sum(splits.values())
    tiles = [("records validated", s.get("records")), ("in the set", s.get("records_accepted")),
             ("acceptance", _pct(s.get("acceptance_rate"))), ("grounding precision", _pct(s.get("grounding_precision"))),
             ("train / test items", f"{splits.get('train', 0)} / {splits.get('test', 0)}"),
             ("train / test patients", f"{patients.get('train', 0)} / {patients.get('test', 0)}"),
             ("cost", f"${float(s.get('cost_usd') or 0):.4f}")]
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>ECG-Grounding dataset card</title>"
             f"<style>{_CSS}</style></head><body>",
             "<h1>ECG-Grounding instruction set</h1>",
             f"<p class='muted'>{n_items} items in GEM's format from {_e(', '.join(sorted(data.sources)))}. "
             "Every number below is counted from this folder's files (summary.json, provenance.parquet, the "
             "shards) and the run's measurements.</p>",
             "<div class='tiles'>" + "".join(f"<div class='tile'><b>{_e(v)}</b>{_e(k)}</div>" for k, v in tiles)
             + "</div>"]

    # counts and splits
    parts.append("<h2 id='splits'>Counts and splits (by patient)</h2>")
    parts.append(_table(["split", "items", "patients", "shards"],
                        [[split, splits.get(split, 0), patients.get(split, 0),
                          _e(", ".join(data.shards.get(split, [])) or "-")] for split in ("train", "test")], {1, 2}))
    parts.append(f"<p>Patients in both splits: <b>{_e(s.get('patients_in_both', 0))}</b> (the split is a SHA-256 "
                 f"of the patient id; test fraction {_e(s.get('test_fraction'))}).</p>")
    parts.append(_table(["source", "records", "in the set", "licence"],
                        [[_e(src), n, data.accepted_by_source.get(src, 0),
                          _e(SOURCE_LICENCES.get(src, ("", "unknown"))[1])] for src, n in sorted(data.sources.items())],
                        {1, 2}))

    # acceptance and rejection reasons
    parts.append("<h2 id='acceptance'>Acceptance and rejection reasons</h2>")
    parts.append(f"<p>Records: {_e(s.get('records'))}, accepted {_e(s.get('records_accepted'))} "
                 f"({_e(_pct(s.get('acceptance_rate')))}). Attempts validated {_e(s.get('attempts_validated'))}, "
                 f"accepted {_e(s.get('attempts_accepted'))} ({_e(_pct(s.get('attempt_acceptance_rate')))}). "
                 f"Without context {_e(s.get('no_context'))}, without an answer {_e(s.get('no_answer'))}, "
                 f"without an image {_e(s.get('no_image'))}.</p>")
    reasons = s.get("rejection_reasons") or {}
    final = s.get("final_rejection_reasons") or {}
    n_att = max(1, int(s.get("attempts_validated") or 0))
    if reasons or final:
        keys = sorted(set(reasons) | set(final), key=lambda k: -(reasons.get(k, 0)))
        parts.append(_table(["reason", "attempts", "", "records left out"],
                            [[_e(k), reasons.get(k, 0), _bar(reasons.get(k, 0) / n_att, bad=True), final.get(k, 0)]
                             for k in keys], {1, 3}))
    else:
        parts.append("<p>No attempt was rejected.</p>")
    parts.append(f"<p>Diagnosis recall {_e(_pct(s.get('diagnosis_recall')))}, precision "
                 f"{_e(_pct(s.get('diagnosis_precision')))}; lead coverage {_e(_pct(s.get('lead_coverage')))}; "
                 f"cited numbers grounded {_e(s.get('numeric_grounded'))}/{_e(s.get('numeric_claims'))}.</p>")

    # per diagnosis
    parts.append("<h2 id='diagnoses'>Diagnoses</h2>")
    if data.diagnoses:
        parts.append(_table(["diagnosis", "records", "in the set", "acceptance"],
                            [[_e(d["name"]), d["records"], d["in_set"], f"{_bar(d['acceptance'])} {_pct(d['acceptance'])}"]
                             for d in data.diagnoses], {1, 2}))
    else:
        parts.append("<p>No validated record.</p>")

    # histograms
    parts.append("<h2 id='measurements'>Measurements</h2>")
    uri = histograms_png(data.measured)
    if uri:
        parts.append(f"<img id='histograms' alt='histograms of HR, PR, QRS, QT, QTc and QRS axis' src='{uri}' "
                     "style='max-width:100%'>")
    else:
        parts.append("<p>No measurements were found for this set.</p>")

    # tokens and cost
    parts.append("<h2 id='cost'>Tokens and cost</h2>")
    tok = s.get("tokens") or {}
    parts.append(f"<p>Tokens: {_e(', '.join(f'{k} {v:,}' for k, v in tok.items()) or 'none')}; "
                 f"cost ${float(s.get('cost_usd') or 0):.4f}"
                 + (f", ${float(s.get('cost_usd') or 0) / s['records_accepted']:.5f} per item in the set"
                    if s.get("records_accepted") else "") + ".</p>")
    if data.models:
        parts.append(_table(["backend", "model", "provider-reported", "attempts", "in the set", "prompt tokens",
                             "completion tokens", "cost (USD)"],
                            [[_e(m["backend"]), _e(m["model"]), _e(", ".join(m.get("provider_models") or []) or "-"),
                              m["attempts"], m["in_set"], f"{m['prompt_tokens']:,}", f"{m['completion_tokens']:,}",
                              f"{m['cost_usd']:.4f}"] for m in data.models], {3, 4, 5, 6, 7}))

    # examples
    parts.append("<h2 id='examples'>Examples</h2>")
    if not data.examples:
        parts.append("<p>The set is empty.</p>")
    for i, ex in enumerate(data.examples, 1):
        item = ex["item"]
        conv = item.get("conversations") or [{}, {}]
        question = (conv[0].get("value") or "").replace("<image>\n", "")
        img = _thumb_uri(ex.get("image_file"))
        parts.append(f"<div class='example' id='example-{i}'><h3>{i}. {_e(item.get('id'))} "
                     f"<span class='muted'>({_e(ex['split'])}; {_e(', '.join(ex['diagnoses']) or 'no diagnosis')})"
                     "</span></h3>")
        parts.append(f"<img alt='ECG {_e(item.get('id'))}' src='{img}'>" if img else
                     f"<p class='muted'>image {_e(item.get('image'))} not found</p>")
        parts.append(f"<p class='q'>Q: {_e(question)}</p><div class='a'>{_e(conv[1].get('value'))}</div>")
        parts.append(f"<p class='muted'>Report: {_e(item.get('report'))} &middot; ecg: <code>{_e(item.get('ecg'))}"
                     f"</code> &middot; image: <code>{_e(item.get('image'))}</code></p></div>")
    parts.append("</body></html>")
    return "\n".join(parts)
