"""Optional image augmentations, deterministic by seed: grid colours, black-and-white, paper tint, noise,
small rotation, blur and JPEG artefacts (the variation of scanned / photographed paper ECGs)."""
from __future__ import annotations

import io
import zlib
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
from PIL import Image, ImageFilter

from pipeline.render_raster import Colours

GRID_STYLES: dict[str, Colours] = {
    "red": Colours(),
    "pink": Colours(minor=(253, 226, 232), major=(244, 164, 188)),
    "orange": Colours(minor=(253, 224, 196), major=(240, 160, 96)),
    "blue": Colours(minor=(212, 226, 250), major=(120, 160, 225)),
    "green": Colours(minor=(208, 238, 212), major=(110, 185, 125)),
    "gray": Colours(minor=(222, 222, 222), major=(160, 160, 160)),
}
_BW = Colours(paper=(255, 255, 255), minor=(225, 225, 225), major=(150, 150, 150), trace=(0, 0, 0), text=(0, 0, 0))
_TINTS = [(255, 246, 222), (255, 251, 205), (236, 242, 250), (245, 240, 232)]

PRESETS: dict[str, str] = {
    "light": "grid=random,tint=0.4,noise=3,rotate=1,blur=0.6",
    "heavy": "grid=random,tint=0.8,noise=8,rotate=3,blur=1.2,jpeg=55",
    "scan": "bw,noise=6,rotate=2,blur=0.8,jpeg=70",
}


@dataclass(frozen=True)
class Augment:
    """What to vary. Random quantities are drawn per image from ``image_seed(seed, record_id)``.

    ``grid``: a ``GRID_STYLES`` name or ``random``; ``bw``: grey grid, black trace; ``tint``: 0-1 strength of
    a paper tint; ``noise_sd``: Gaussian pixel noise SD in 0-255 grey levels; ``rotate_deg``: largest
    |rotation| in degrees; ``blur_px``: largest Gaussian blur radius in pixels; ``jpeg_quality``: JPEG
    round trip at this quality (1-95).
    """

    grid: str = "red"
    bw: bool = False
    tint: float = 0.0
    noise_sd: float = 0.0
    rotate_deg: float = 0.0
    blur_px: float = 0.0
    jpeg_quality: int | None = None

    def __post_init__(self) -> None:
        if self.grid != "random" and self.grid not in GRID_STYLES:
            raise ValueError(f"grid {self.grid!r}: choose random or one of {', '.join(GRID_STYLES)}")
        if not 0 <= self.tint <= 1:
            raise ValueError("tint must be within 0..1")
        for name in ("noise_sd", "rotate_deg", "blur_px"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.rotate_deg > 15:
            raise ValueError("rotate_deg above 15 degrees is not a 'small rotation'")
        if self.jpeg_quality is not None and not 1 <= self.jpeg_quality <= 95:
            raise ValueError("jpeg quality must be within 1..95")

    _KEYS = {"grid": "grid", "tint": "tint", "noise": "noise_sd", "rotate": "rotate_deg", "blur": "blur_px",
             "jpeg": "jpeg_quality"}

    @classmethod
    def parse(cls, spec: str | None) -> Augment | None:
        """``'grid=blue,bw,tint=0.3,noise=5,rotate=2,blur=1,jpeg=60'`` or a preset (light, heavy, scan);
        ``None``, ``''`` and ``'none'`` give ``None``."""
        if spec is None or spec.strip().lower() in ("", "none"):
            return None
        spec = PRESETS.get(spec.strip().lower(), spec)
        values: dict = {}
        for item in (s.strip() for s in spec.split(",") if s.strip()):
            key, _, value = item.partition("=")
            key = key.strip().lower()
            if key == "bw":
                values["bw"] = value.strip().lower() not in ("0", "false", "no")
            elif key in cls._KEYS:
                if not value:
                    raise ValueError(f"augment {key!r} needs a value ({key}=...)")
                field = cls._KEYS[key]
                values[field] = value.strip() if field == "grid" else (int(value) if field == "jpeg_quality" else float(value))
            else:
                raise ValueError(f"unknown augment {key!r}; use grid, bw, tint, noise, rotate, blur, jpeg or a preset "
                                 f"({', '.join(PRESETS)})")
        return cls(**values)

    def spec(self) -> str:
        """The canonical spec string (what the manifest records)."""
        inv = {v: k for k, v in self._KEYS.items()}
        parts = []
        default = Augment()
        for f in fields(self):
            v = getattr(self, f.name)
            if v == getattr(default, f.name):
                continue
            parts.append("bw" if f.name == "bw" else f"{inv[f.name]}={v:g}" if isinstance(v, float) else f"{inv[f.name]}={v}")
        return ",".join(parts) or "none"

    @property
    def raster_only(self) -> bool:
        """True when it changes pixels (noise, rotation, blur, JPEG), which an SVG cannot carry."""
        return bool(self.noise_sd or self.rotate_deg or self.blur_px or self.jpeg_quality)


def image_seed(seed: int, record_id: str) -> int:
    """A stable per-image seed: the same (seed, record) always gives the same picture, records differ."""
    return (int(seed) * 1_000_003 + zlib.crc32(record_id.encode("utf-8"))) % (2**63)


def choose_colours(augment: Augment | None, rng: np.random.Generator) -> Colours:
    """The page colours after the colour augmentations (draws from ``rng`` in a fixed order)."""
    if augment is None:
        return GRID_STYLES["red"]
    names = sorted(GRID_STYLES)
    pick = names[int(rng.integers(len(names)))] if augment.grid == "random" else augment.grid
    colours = _BW if augment.bw else GRID_STYLES[pick]
    tint_rgb = _TINTS[int(rng.integers(len(_TINTS)))]
    strength = augment.tint * float(rng.uniform(0.5, 1.0))
    if strength > 0:
        paper = tuple(int(round(255 + (t - 255) * strength)) for t in tint_rgb)
        if augment.bw:
            grey = int(round(sum(paper) / 3))
            paper = (grey, grey, grey)
        colours = replace(colours, paper=paper)
    return colours


def apply_pixels(img: Image.Image, augment: Augment | None, rng: np.random.Generator, paper: tuple[int, int, int]) -> Image.Image:
    """Rotation, blur, noise and JPEG artefacts on a drawn page; returns ``img`` untouched when none apply."""
    if augment is None or not augment.raster_only:
        return img
    mode = "L" if augment.bw else "RGB"
    out = img.convert(mode)
    fill = int(round(sum(paper) / 3)) if mode == "L" else paper
    angle = float(rng.uniform(-augment.rotate_deg, augment.rotate_deg))
    radius = float(rng.uniform(0.3, 1.0)) * augment.blur_px
    if augment.rotate_deg:
        out = out.rotate(angle, resample=Image.BILINEAR, expand=False, fillcolor=fill)
    if augment.blur_px:
        out = out.filter(ImageFilter.GaussianBlur(radius))
    if augment.noise_sd:
        arr = np.asarray(out, dtype=np.int16)
        arr = arr + rng.normal(0.0, augment.noise_sd, size=arr.shape).astype(np.int16)
        out = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode=mode)
    if augment.jpeg_quality:
        buf = io.BytesIO()
        out.save(buf, format="JPEG", quality=int(augment.jpeg_quality))
        buf.seek(0)
        out = Image.open(buf)
        out.load()
    return out


def augment_dict(augment: Augment | None) -> dict:
    return asdict(augment) if augment else {}
