"""Merge model probabilities with the product's cloud mask, one array block at a time.

This is the array half of FarmVibes.AI's op ``merge_cloud_masks_simple``; the
raster driver (``windowed_merge.py``) reads row windows and calls :func:`flags`
and :func:`finish` on each; :func:`merge_block` does both on one block. Rules
(see docs/architecture.md):

- cloud = (cloud probability > cloud threshold) | product cloud, shadow likewise,
  both only on valid pixels: nodata is never cloud, never starts or grows one,
  and comes out as 255 (FarmVibes.AI counted nodata 100 as cloud).
- cloud and shadow are each dilated with a disk of radius ``dilation``.
- then ``min_area`` (FarmVibes.AI's): on the merged mask (cloud or shadow),
  8-connected flagged components smaller than ``min_area`` pixels become clear,
  then 8-connected clear components smaller than ``min_area`` (holes, small clear
  areas at the raster's edge too) are filled. Nodata is neither: it separates
  components. A filled hole is shown as shadow when it touches shadow and no
  cloud, else as cloud (:func:`apply_min_area`).
- categorical output: cloud wins over shadow, which wins over clear; binary
  output is FarmVibes.AI's 0/1 (cloud or shadow) plus 255 nodata.

Windowed processing is exact: a block with :meth:`MergeSettings.halo` pixels
of context around its core gives the same core bytes as the whole raster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .choices import DEFAULTS, OUTPUT_MODES, PRODUCT_KINDS
from .decision import FARMVIBES_CLOUD_THRESHOLD, FARMVIBES_SHADOW_THRESHOLD
from .errors import SettingsError

CLEAR, CLOUD, SHADOW, NODATA = 0, 1, 2, 255

CATEGORY_NAMES = {CLEAR: "clear", CLOUD: "cloud", SHADOW: "cloud shadow", NODATA: "nodata"}
BINARY_CATEGORY_NAMES = {CLEAR: "clear", CLOUD: "cloud or shadow", NODATA: "nodata"}

# Okabe-Ito colours, chosen to stay distinct for colour-blind users and legible
# both over imagery and on QGIS's white canvas (white "cloud" would vanish
# there). Clear is a light grey so the flagged classes stand out; nodata is
# transparent so the mask does not hide whatever lies under a scene's edge.
CATEGORY_COLOURS = {
    CLEAR: (200, 200, 200, 255),
    CLOUD: (213, 94, 0, 255),  # vermilion
    SHADOW: (0, 114, 178, 255),  # blue
    NODATA: (0, 0, 0, 0),
}
BINARY_CATEGORY_COLOURS = {
    CLEAR: CATEGORY_COLOURS[CLEAR],
    CLOUD: CATEGORY_COLOURS[CLOUD],
    NODATA: CATEGORY_COLOURS[NODATA],
}

# Sentinel-2 L2A scene classification classes (SCL).
SCL_UNKNOWN = (0, 1)  # no data, saturated or defective
SCL_SHADOW = (3,)
SCL_CLOUD = (8, 9, 10)  # cloud medium / high probability, thin cirrus
QA60_CLOUD_BITS = (1 << 10) | (1 << 11)  # opaque clouds, cirrus

Sides = tuple[bool, bool, bool, bool]  # top, bottom, left, right: True where that side is the raster edge


def categories(mode: str) -> dict[int, tuple[str, tuple[int, int, int, int]]]:
    """Value -> (name, RGBA) for an output mode, for colour tables and styles."""
    if mode == "binary":
        return {v: (BINARY_CATEGORY_NAMES[v], BINARY_CATEGORY_COLOURS[v]) for v in BINARY_CATEGORY_NAMES}
    if mode == "categorical":
        return {v: (CATEGORY_NAMES[v], CATEGORY_COLOURS[v]) for v in CATEGORY_NAMES}
    raise ValueError(f"output mode must be one of {', '.join(OUTPUT_MODES)}, got {mode!r}")


def _check_range(name: str, value: float, low: float, high: float | None = None) -> None:
    # Written as "not (inside)" so that NaN is rejected too.
    inside = value >= low if high is None else low <= value <= high
    if not inside:
        allowed = f">= {low}" if high is None else f"between {low} and {high}"
        raise SettingsError(f"{name} must be {allowed}, got {value!r}")


def _check_int(name: str, value: int) -> None:
    # bool is an int subclass, but True as a radius is surely a mistake.
    whole = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not whole or value < 0:
        raise SettingsError(f"{name} must be a whole number of pixels >= 0, got {value!r}")


@dataclass(frozen=True)
class MergeSettings:
    """How probabilities and the product mask become one mask (defaults = FarmVibes.AI's)."""

    cloud_threshold: float = FARMVIBES_CLOUD_THRESHOLD
    shadow_threshold: float = FARMVIBES_SHADOW_THRESHOLD
    # Decide by the most likely of clear, cloud and shadow instead of the thresholds (the
    # ukis models' rule: see decision.py). Needs both probabilities from one softmax.
    most_likely_class: bool = False
    product_kind: str = DEFAULTS.product_kind
    product_probability_threshold: float = 50.0  # MSK_CLDPRB is 0..100
    dilation: int = DEFAULTS.dilation  # disk radius in px
    min_area: int = DEFAULTS.min_area  # px; smaller flagged components are cleared, smaller clear ones filled
    output_mode: str = DEFAULTS.output_mode

    def halo(self) -> int:
        """Rows/cols of context a window needs on each inner side for an exact core.

        Dilation reaches ``dilation`` px. Whether a component is small, and so is
        cleared or filled, is decided from ``min_area`` px around it (a bigger one
        reaches further), and whether a hole at the core is small depends on the
        flagged components around it, up to ``min_area`` px further: so twice
        ``min_area`` beyond the dilation (once is too little: test_merge.py's
        haloed-windows test finds cores that differ).
        """
        return self.dilation + (2 * self.min_area if self.min_area > 1 else 0)

    def validate(self) -> None:
        """Raise SettingsError naming the first bad value and what is allowed."""
        _check_range("cloud_threshold", self.cloud_threshold, 0.0, 1.0)
        _check_range("shadow_threshold", self.shadow_threshold, 0.0, 1.0)
        _check_range("product_probability_threshold", self.product_probability_threshold, 0.0, 100.0)
        _check_int("dilation", self.dilation)
        _check_int("min_area", self.min_area)
        if self.product_kind not in PRODUCT_KINDS:
            raise SettingsError(f"product_kind must be one of {', '.join(PRODUCT_KINDS)}, got {self.product_kind!r}")
        if self.output_mode not in OUTPUT_MODES:
            raise SettingsError(f"output_mode must be one of {', '.join(OUTPUT_MODES)}, got {self.output_mode!r}")


@dataclass(frozen=True)
class ProductMask:
    """The product's own mask, decoded; cloud and shadow are False where not known."""

    cloud: np.ndarray  # bool
    shadow: np.ndarray  # bool
    known: np.ndarray  # bool: False where the product mask is nodata / has no information


def _unknown(values: np.ndarray, nodata: float | None) -> np.ndarray:
    """NaN, and the declared nodata, carry no information whatever the kind."""
    unknown = np.isnan(values) if values.dtype.kind == "f" else np.zeros(values.shape, dtype=bool)
    if nodata is not None and not math.isnan(nodata):
        unknown |= values == nodata
    return unknown


def decode_product_mask(
    values: np.ndarray, kind: str, nodata: float | None = None, probability_threshold: float = 50.0
) -> ProductMask:
    """Turn a product mask's raw values into cloud / shadow / known flags.

    Each kind encodes cloud differently (README, product mask kinds); decoding here keeps
    :func:`merge_block` independent of where the mask came from.
    """
    values = np.asarray(values)
    known = ~_unknown(values, nodata)
    shadow = np.zeros(values.shape, dtype=bool)
    if kind == "nonzero":
        cloud = values != 0
    elif kind == "scl":
        known &= ~np.isin(values, SCL_UNKNOWN)
        cloud = np.isin(values, SCL_CLOUD)
        shadow = np.isin(values, SCL_SHADOW)
    elif kind == "qa60":
        # QA60 may arrive as float (resampled or converted products); bits are
        # only meaningful on known, finite values, so others are zeroed first.
        bits = np.where(known, values, 0).astype(np.int64)
        cloud = (bits & QA60_CLOUD_BITS) != 0
    elif kind == "probability":
        with np.errstate(invalid="ignore"):
            cloud = values >= probability_threshold
    else:
        raise ValueError(f"product mask kind must be one of {', '.join(PRODUCT_KINDS)}, got {kind!r}")
    return ProductMask(cloud=cloud & known, shadow=shadow & known, known=known)


def disk_offsets(radius: int) -> list[tuple[int, int]]:
    """Offsets (dy, dx) of the dilation disk: dy*dy + dx*dx <= radius*radius."""
    r = int(radius)
    return [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dy * dy + dx * dx <= r * r]


def dilate_disk(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by a disk; pixels outside the array count as False.

    The disk is split into one horizontal run per row offset dy, of half-width
    isqrt(r*r - dy*dy). Row dilations of growing half-width are built one step
    at a time (two shifted ORs each) and each is ORed, shifted by its dy's, as
    soon as it exists, so memory stays at three masks whatever the radius.
    Chosen by measurement on a 2048x10980 block: radius 5 takes 0.03 s here,
    0.27 s with scipy.ndimage.binary_dilation and the disk footprint, 0.39 s
    with the same runs done by ndimage.maximum_filter1d on uint8; radius 15
    takes 0.09 s here and 1.1 s with maximum_filter1d.
    """
    mask = np.asarray(mask, dtype=bool)
    r = int(radius)
    if r <= 0 or not mask.any():  # an empty mask is common (no shadow model): skip the ORs
        return mask.copy()
    height, width = mask.shape
    by_width: dict[int, list[int]] = {}
    for dy in range(-r, r + 1):
        by_width.setdefault(math.isqrt(r * r - dy * dy), []).append(dy)
    out = np.zeros_like(mask)
    rows = mask.copy()
    for half in range(max(by_width) + 1):
        if 0 < half < width:
            rows[:, half:] |= mask[:, :-half]
            rows[:, :-half] |= mask[:, half:]
        for dy in by_width.get(half, ()):
            _or_shifted_rows(out, rows, dy, height)
    return out


def _or_shifted_rows(out: np.ndarray, src: np.ndarray, dy: int, height: int) -> None:
    """out[y] |= src[y + dy] where both rows exist."""
    if abs(dy) >= height:
        return
    if dy >= 0:
        out[: height - dy] |= src[dy:]
    else:
        out[-dy:] |= src[: height + dy]


EIGHT = np.ones((3, 3), dtype=bool)


def small_components(mask: np.ndarray, min_area: int, at_edge: Sides = (True,) * 4) -> np.ndarray:
    """Pixels of 8-connected components of ``mask`` with fewer than ``min_area`` pixels.

    A component touching a side of the block that is not the raster's edge may
    continue outside the block, so it never counts as small: with the halo of
    :meth:`MergeSettings.halo` such a component is provably large where it matters.
    """
    mask = np.asarray(mask, dtype=bool)
    if min_area <= 1 or not mask.any():
        return np.zeros(mask.shape, dtype=bool)
    # Here, not at import: SciPy's ndimage took 0.2-0.3 s to import, paid by every run,
    # and only runs with a minimum area label components.
    from scipy import ndimage

    labels, count = ndimage.label(mask, structure=EIGHT)
    small = np.bincount(labels.ravel(), minlength=count + 1) < min_area
    for is_edge, border in zip(at_edge, (labels[0], labels[-1], labels[:, 0], labels[:, -1])):
        if not is_edge:
            small[border] = False
    small[0] = False
    return small[labels]


def fill_value(touches_cloud: np.ndarray, touches_shadow: np.ndarray, binary: bool) -> np.ndarray:
    """What a filled hole shows: shadow when it touches shadow and no cloud, else cloud.

    A hole with no flagged neighbour at all (e.g. a small valid area amid nodata) is
    cloud: FarmVibes.AI fills it as cloud-or-shadow. Binary: always 1."""
    if binary:
        return np.full(touches_cloud.shape, CLOUD, np.uint8)
    return np.where(touches_shadow & ~touches_cloud, np.uint8(SHADOW), np.uint8(CLOUD))


def apply_min_area(values: np.ndarray, min_area: int, binary: bool, at_edge: Sides = (True,) * 4) -> np.ndarray:
    """FarmVibes.AI's ``min_area`` on an encoded (dilated) mask block.

    Flagged components (cloud or shadow together) smaller than ``min_area`` become
    clear, whatever classes they hold; then clear components smaller than
    ``min_area`` are filled (:func:`fill_value`). Nodata stays and separates.
    """
    values = np.asarray(values, dtype=np.uint8)
    out = values.copy()
    if min_area <= 1:
        return out
    out[small_components((values == CLOUD) | (values == SHADOW), min_area, at_edge)] = CLEAR
    holes = small_components(out == CLEAR, min_area, at_edge)
    if holes.any():
        from scipy import ndimage  # see small_components

        labels, count = ndimage.label(holes, structure=EIGHT)
        touches_cloud, touches_shadow = (
            np.bincount(labels[ndimage.binary_dilation(out == c, EIGHT) & holes], minlength=count + 1) > 0
            for c in (CLOUD, SHADOW)
        )
        out[holes] = fill_value(touches_cloud, touches_shadow, binary)[labels[holes]]
    return out


def _threshold(probability: np.ndarray | None, threshold: float, shape: tuple[int, ...]) -> np.ndarray:
    """probability > threshold (strict, as FarmVibes.AI); NaN and a missing model are False."""
    if probability is None:
        return np.zeros(shape, dtype=bool)
    probability = np.asarray(probability)
    _check_shape("probability", probability.shape, shape)
    with np.errstate(invalid="ignore"):
        return probability > threshold


def most_likely(
    cloud_p: np.ndarray | None, shadow_p: np.ndarray | None, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Cloud and shadow where each is the most likely class of clear, cloud and shadow.

    Ties go to the first of that order, as ukis-csmask's argmax does. Clear is what
    the two leave of 1, in float32: on the sample and a second scene this decides every
    pixel as ukis-csmask does (test_fidelity.py), whose own blended clear channel can
    differ from it in the last bit only where two classes are within about 1e-7, which
    no pixel there is. NaN (nodata) is neither."""
    if cloud_p is None or shadow_p is None:
        raise ValueError("the most likely class needs both the cloud and the shadow probability")
    cloud_p, shadow_p = np.asarray(cloud_p, dtype=np.float32), np.asarray(shadow_p, dtype=np.float32)
    _check_shape("probability", cloud_p.shape, shape)
    _check_shape("probability", shadow_p.shape, shape)
    clear = np.float32(1) - cloud_p - shadow_p
    with np.errstate(invalid="ignore"):
        cloud = (cloud_p > clear) & (cloud_p >= shadow_p)
        shadow = (shadow_p > clear) & (shadow_p > cloud_p)
    return cloud, shadow


def _check_shape(name: str, got: tuple[int, ...], want: tuple[int, ...]) -> None:
    if got != want:
        raise ValueError(f"{name} block has shape {got}, expected {want} (the valid mask's shape)")


def _check_core(core: tuple[slice, slice], shape: tuple[int, ...], at_edge: Sides, halo: int) -> None:
    """Refuse a core that sits closer than ``halo`` to an inner side: its bytes would be wrong."""
    (top, bottom, _), (left, right, _) = (core[0].indices(shape[0]), core[1].indices(shape[1]))
    margins = (top, shape[0] - bottom, left, shape[1] - right)
    for side, margin, is_edge in zip(("top", "bottom", "left", "right"), margins, at_edge):
        if not is_edge and margin < halo:
            raise ValueError(
                f"core is {margin} px from the block's {side} side, which is not the "
                f"raster's edge; it needs a halo of {halo} px"
            )


def flags(
    cloud_p: np.ndarray | None,
    shadow_p: np.ndarray | None,
    valid: np.ndarray,
    product: ProductMask | None,
    settings: MergeSettings,
) -> tuple[np.ndarray, np.ndarray]:
    """Cloud and shadow before they are grown: probability over its threshold or the product says so.

    Only where valid. Pixel by pixel."""
    shape = valid.shape
    if settings.most_likely_class:
        cloud, shadow = most_likely(cloud_p, shadow_p, shape)
    else:
        cloud = _threshold(cloud_p, settings.cloud_threshold, shape)
        shadow = _threshold(shadow_p, settings.shadow_threshold, shape)
    if product is not None:
        _check_shape("product mask", product.cloud.shape, shape)
        cloud |= product.cloud & product.known
        shadow |= product.shadow & product.known
    cloud &= valid
    shadow &= valid
    return cloud, shadow


def finish(
    cloud: np.ndarray, shadow: np.ndarray, valid_core: np.ndarray, settings: MergeSettings, core: tuple[slice, slice]
) -> np.ndarray:
    """Dilate cloud and shadow, cut out the core and encode it as categories.

    This comes before ``min_area``: :func:`apply_min_area`."""
    cloud = dilate_disk(cloud, settings.dilation)[core]
    shadow = dilate_disk(shadow, settings.dilation)[core]
    if settings.output_mode == "binary":
        out = (cloud | shadow).astype(np.uint8)
    else:
        out = np.where(cloud, np.uint8(CLOUD), np.where(shadow, np.uint8(SHADOW), np.uint8(CLEAR)))
    out[~valid_core] = NODATA
    return out


def merge_block(
    cloud_p: np.ndarray | None,
    shadow_p: np.ndarray | None,
    valid: np.ndarray,
    product: ProductMask | None,
    settings: MergeSettings,
    core: tuple[slice, slice] | None = None,
    at_edge: Sides = (True, True, True, True),
) -> np.ndarray:
    """Merged uint8 mask of the ``core`` part of a block (the whole block when None).

    ``at_edge`` says which sides of the block (top, bottom, left, right) are the
    raster's edge; other sides must leave ``settings.halo()`` px around the core.
    (The raster driver, ``windowed_merge.py``, needs no ``min_area`` halo: it knows
    every component's whole size from passes over the raster.)
    """
    settings.validate()
    valid = np.asarray(valid, dtype=bool)
    if valid.ndim != 2:
        raise ValueError(f"valid must be a 2-D mask, got shape {valid.shape}")
    core = core or (slice(None), slice(None))
    _check_core(core, valid.shape, at_edge, settings.halo())
    cloud, shadow = flags(cloud_p, shadow_p, valid, product, settings)
    out = finish(cloud, shadow, valid, settings, (slice(None), slice(None)))
    out = apply_min_area(out, settings.min_area, settings.output_mode == "binary", at_edge)
    return out[core]


@dataclass
class Fractions:
    """Pixel counts per category, accumulated over windows, for the *_FRACTION outputs."""

    clear: int = 0
    cloud: int = 0
    shadow: int = 0
    nodata: int = 0

    def add(self, mask: np.ndarray, mode: str) -> None:
        """Count one output window; in binary mode cloud-or-shadow counts as cloud."""
        if mode not in OUTPUT_MODES:
            raise ValueError(f"output mode must be one of {', '.join(OUTPUT_MODES)}, got {mode!r}")
        counts = np.bincount(np.asarray(mask, dtype=np.uint8).ravel(), minlength=256)
        allowed = np.zeros(256, dtype=bool)
        allowed[[CLEAR, CLOUD, NODATA] if mode == "binary" else [CLEAR, CLOUD, SHADOW, NODATA]] = True
        stray = np.flatnonzero((counts > 0) & ~allowed)
        if stray.size:
            # A stray value means a caller mixed modes; counting it anywhere would skew the fractions.
            raise ValueError(f"mask holds values that are not {mode} categories: {stray.tolist()}")
        self.clear += int(counts[CLEAR])
        self.cloud += int(counts[CLOUD])
        self.shadow += int(counts[SHADOW]) if mode == "categorical" else 0
        self.nodata += int(counts[NODATA])

    @property
    def valid(self) -> int:
        """Pixels that are not nodata: the denominator of every fraction."""
        return self.clear + self.cloud + self.shadow

    def as_dict(self) -> dict[str, float]:
        """Fractions of valid pixels; all 0.0 (not NaN) when nothing is valid."""
        total = self.valid
        if total == 0:
            return {"CLEAR_FRACTION": 0.0, "CLOUD_FRACTION": 0.0, "SHADOW_FRACTION": 0.0}
        return {
            "CLEAR_FRACTION": self.clear / total,
            "CLOUD_FRACTION": self.cloud / total,
            "SHADOW_FRACTION": self.shadow / total,
        }
