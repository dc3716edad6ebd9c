"""The one table of clinical cut-offs (``knowledge/cutoffs.yaml``), read by knowledge, writer, prompts and
validator alike, so that "prolonged QTc" means the same number everywhere.

    >>> from pipeline.cutoffs import cutoff, cutoffs
    >>> cutoff("qtc_prolonged_ms", sex="female")
    460.0
    >>> cutoffs()["axis_normal_deg"].contains(45.0)
    True
    >>> cutoffs()["pr_prolonged_ms"].abnormal(204.0)
    True

A cut-off is either a threshold (``value`` with the ``comparison`` on whose side the finding lies; sex may
change the value) or a band (``range`` [low, high): an axis sector, the incomplete-block QRS band). Units are
those of the measurement columns: ms, bpm, mV, degrees.
"""
from __future__ import annotations

import operator
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, model_validator

CUTOFFS_PATH = Path(__file__).resolve().parents[1] / "knowledge" / "cutoffs.yaml"

Sex = Literal["male", "female"] | None
_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


class Cutoff(BaseModel):
    """One clinical cut-off. ``text`` says it in words (the prompts quote it); ``source`` is a references key."""

    model_config = ConfigDict(extra="forbid")
    name: str = ""
    units: Literal["ms", "bpm", "mV", "deg", "count", "ratio"]
    text: str
    source: str
    value: float | None = None
    comparison: Literal[">", ">=", "<", "<="] | None = None
    male: float | None = None
    female: float | None = None
    default: float | None = None
    range: tuple[float, float] | None = None
    closed: bool = False  # a band includes its upper end too

    @model_validator(mode="after")
    def _shape(self) -> "Cutoff":
        by_sex = self.male is not None or self.female is not None
        if self.range is not None:
            if self.value is not None or by_sex or self.comparison is not None:
                raise ValueError(f"{self.name}: a band has a range only")
            if not self.range[0] < self.range[1]:
                raise ValueError(f"{self.name}: range must be [low, high] with low < high")
            return self
        if self.comparison is None:
            raise ValueError(f"{self.name}: a threshold needs a comparison")
        if by_sex:
            if self.male is None or self.female is None or self.default is None:
                raise ValueError(f"{self.name}: a sex-specific threshold needs male, female and default")
        elif self.value is None:
            raise ValueError(f"{self.name}: needs a value, a sex-specific value or a range")
        return self

    @property
    def is_band(self) -> bool:
        return self.range is not None

    def threshold(self, sex: Sex = None) -> float:
        """The threshold for ``sex`` ('male' / 'female'; None: ``default``). Bands have none."""
        if self.range is not None:
            raise ValueError(f"{self.name} is a band {self.range}, not a threshold")
        if self.value is not None:
            return float(self.value)
        return float({"male": self.male, "female": self.female}.get(sex or "", self.default))

    def abnormal(self, x: float | None, sex: Sex = None) -> bool | None:
        """Whether measured ``x`` lies on the finding's side of the threshold (inside the band for a band);
        None when ``x`` is missing."""
        if x is None or x != x:
            return None
        if self.range is not None:
            return self.contains(x)
        return _OPS[self.comparison](x, self.threshold(sex))

    def contains(self, x: float) -> bool:
        lo, hi = self.range  # type: ignore[misc]
        return lo <= x <= hi if self.closed else lo <= x < hi

    def boundaries(self, sex: Sex = None) -> tuple[float, ...]:
        """The numbers a value can cross: the threshold, or the band's two ends."""
        return tuple(float(v) for v in self.range) if self.range is not None else (self.threshold(sex),)


class CutoffTable(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cutoffs: dict[str, Cutoff]
    # bounds of what a human ECG can show (bands only): values outside are measurement failures, not findings
    physiological_limits: dict[str, Cutoff] = {}


@lru_cache(maxsize=4)
def _load_table(path: str) -> CutoffTable:
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    for section in ("cutoffs", "physiological_limits"):
        for name, body in (raw.get(section) or {}).items():
            body["name"] = name
    table = CutoffTable.model_validate(raw)
    for name, limit in table.physiological_limits.items():
        if limit.range is None:
            raise ValueError(f"physiological limit {name}: a limit is a range [low, high]")
    return table


def _load(path: str) -> dict[str, Cutoff]:
    return dict(_load_table(path).cutoffs)


def physiological_limits(path: Path | str | None = None) -> dict[str, Cutoff]:
    """The physiological limits by reference field name (``rr_ms``, ``qrs_ms`` ...): bands whose ``contains``
    says whether a value is possible at all."""
    return dict(_load_table(str(path or CUTOFFS_PATH)).physiological_limits)


def cutoffs(path: Path | str | None = None) -> dict[str, Cutoff]:
    """Every cut-off by name (loaded once per process)."""
    return _load(str(path or CUTOFFS_PATH))


def cutoff(name: str, sex: Sex = None) -> float:
    """The threshold of cut-off ``name`` for ``sex`` (KeyError for an unknown name: no silent defaults)."""
    table = cutoffs()
    if name not in table:
        raise KeyError(f"no cut-off {name!r} in {CUTOFFS_PATH.name}")
    return table[name].threshold(sex)


def band(name: str) -> tuple[float, float]:
    """The [low, high] of band cut-off ``name``."""
    c = cutoffs()[name]
    if c.range is None:
        raise ValueError(f"{name} is a threshold, not a band")
    return c.range
