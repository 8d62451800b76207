"""Which source flagged each pixel of the improved mask: the ``SOURCE`` output.

A user who compares the product's own mask with the improved one wants to see,
at a glance, what the models added, what only the product mask saw and what the
dilation and the minimum area did. The merge (``windowed_merge.py``) records,
next to its cloud and shadow flags, three source bits per pixel before anything
is grown: the product mask flags it, the cloud model(s) flag it, the shadow model
flags it. :func:`categories` turns those bits, the dilated mask and the final
mask into one byte per pixel, consistent with the mask: a pixel is flagged in
``SOURCE`` (1..6) exactly where the mask says cloud or shadow, clear (0 or 7)
where it says clear, and nodata where it is nodata. The mask itself is not
changed by any of this.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import merge

# Source bits, packed with windowed_merge's CLOUD/SHADOW/VALID bits (1, 2, 4) in one byte.
PRODUCT_BIT, CLOUD_MODEL_BIT, SHADOW_MODEL_BIT = 8, 16, 32

CLEAR, BOTH, CLOUD_MODEL, PRODUCT, SHADOW_MODEL, DILATION, FILLED, CLEARED = range(8)
NODATA = merge.NODATA

NAMES = {
    CLEAR: "clear",
    BOTH: "product mask and model",
    CLOUD_MODEL: "cloud model only: the product mask missed it",
    PRODUCT: "product mask only",
    SHADOW_MODEL: "shadow model only: the product mask missed it",
    DILATION: "dilation (grown around a flagged pixel)",
    FILLED: "small clear gap filled (minimum area)",
    CLEARED: "small patch cleared (minimum area): clear in the mask",
    NODATA: "nodata",
}

# Okabe-Ito colours where a category matters most (what the models added stands out in
# vermilion and blue, as cloud and shadow do in the mask); greys for what the merge's
# rules did. Clear is transparent when styled, so the imagery shows through.
COLOURS = {
    CLEAR: (200, 200, 200, 255),
    BOTH: (0, 158, 115, 255),  # bluish green
    CLOUD_MODEL: (213, 94, 0, 255),  # vermilion
    PRODUCT: (240, 228, 66, 255),  # yellow
    SHADOW_MODEL: (0, 114, 178, 255),  # blue
    DILATION: (150, 150, 150, 255),
    FILLED: (204, 121, 167, 255),  # reddish purple
    CLEARED: (60, 60, 60, 255),
    NODATA: (0, 0, 0, 0),
}

# Lookup tables from the three source bits (value >> 3, 0..7) to a flagged pixel's category.
_BY_BITS = np.full(8, DILATION, np.uint8)  # no source flagged the pixel itself: the dilation grew it
for _bits in range(1, 8):
    _product, _cloud, _shadow = _bits & 1, _bits & 2, _bits & 4
    if _product and (_cloud or _shadow):
        _BY_BITS[_bits] = BOTH
    elif _product:
        _BY_BITS[_bits] = PRODUCT
    elif _cloud:  # the cloud model wins over the shadow model, as cloud does in the mask
        _BY_BITS[_bits] = CLOUD_MODEL
    else:
        _BY_BITS[_bits] = SHADOW_MODEL


def source_bits(
    valid: np.ndarray, product: merge.ProductMask | None, model_cloud: np.ndarray, model_shadow: np.ndarray
) -> np.ndarray:
    """The source bits of a block: who flagged each valid pixel before any growing.

    ``model_cloud`` / ``model_shadow`` are the models' own flags (``merge.flags`` without
    the product mask), so whatever rule decides a model's pixel decides it here too.
    """
    bits = (model_cloud & valid).view(np.uint8) * np.uint8(CLOUD_MODEL_BIT)
    bits |= (model_shadow & valid).view(np.uint8) * np.uint8(SHADOW_MODEL_BIT)
    if product is not None:
        flagged = (product.cloud | product.shadow) & product.known & valid
        bits |= flagged.view(np.uint8) * np.uint8(PRODUCT_BIT)
    return bits


def categories(bits: np.ndarray, dilated: np.ndarray, final: np.ndarray | None = None) -> np.ndarray:
    """SOURCE of a window: from its source bits, the mask after dilation and the final mask.

    The final mask is the one after the minimum area; None: the same as ``dilated``, no minimum area."""
    out = np.where(_flagged(dilated), _BY_BITS[(bits >> 3) & 7], np.uint8(CLEAR))
    if final is None:  # nothing filled or cleared: only nodata to carry over
        out[dilated == merge.NODATA] = NODATA
        return out
    return adjust_for_min_area(out, dilated, final)


def adjust_for_min_area(provisional: np.ndarray, dilated: np.ndarray, final: np.ndarray) -> np.ndarray:
    """Provisional categories (from the dilated mask) made to agree with the final mask.

    What the minimum area filled or cleared says so; nodata where the mask is nodata."""
    out = np.array(provisional, dtype=np.uint8)
    before, after = _flagged(dilated), _flagged(final)
    out[after & ~before] = FILLED
    out[before & ~after] = CLEARED
    out[final == merge.NODATA] = NODATA
    return out


def _flagged(mask: np.ndarray) -> np.ndarray:
    return (mask == merge.CLOUD) | (mask == merge.SHADOW)


FIGURES = (
    "PRODUCT_MASK_FRACTION",
    "MASKED_FRACTION",
    "MODEL_ADDED_FRACTION",
    "DILATION_FRACTION",
    "FILLED_FRACTION",
    "CLEARED_FRACTION",
)


@dataclass
class SourceCounts:
    """Pixels per SOURCE category, accumulated over windows, for the figures of a run."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros(256, np.int64))

    def add(self, source: np.ndarray) -> None:
        self.counts += np.bincount(np.asarray(source, np.uint8).ravel(), minlength=256)

    def figures(self) -> dict[str, float]:
        """Fractions of valid pixels flagged by the product mask, by the improved mask and by each step.

        What the product mask flags, what the improved mask flags (cloud or shadow), and of that
        what the models alone added, what the dilation grew and the minimum area filled; and what
        it cleared. All 0.0 when nothing is valid."""
        c = self.counts
        valid = int(c[:NODATA].sum())
        parts = {
            "PRODUCT_MASK_FRACTION": c[BOTH] + c[PRODUCT],
            "MASKED_FRACTION": c[BOTH:CLEARED].sum(),
            "MODEL_ADDED_FRACTION": c[CLOUD_MODEL] + c[SHADOW_MODEL],
            "DILATION_FRACTION": c[DILATION],
            "FILLED_FRACTION": c[FILLED],
            "CLEARED_FRACTION": c[CLEARED],
        }
        return {k: (int(v) / valid if valid else 0.0) for k, v in parts.items()}


def summary(figures: dict[str, float]) -> str:
    """The figures in one sentence for the log, in percent of valid pixels."""
    f = {k: 100.0 * v for k, v in figures.items()}
    text = (
        f"The product mask flags {f['PRODUCT_MASK_FRACTION']:.1f} % of the valid pixels as cloud or "
        f"shadow, the improved mask {f['MASKED_FRACTION']:.1f} %: of these, "
        f"{f['MODEL_ADDED_FRACTION']:.1f} points were added by the models (the product mask missed "
        f"them) and {f['DILATION_FRACTION']:.1f} by the dilation"
    )
    if f["FILLED_FRACTION"] or f["CLEARED_FRACTION"]:
        text += f"; the minimum area filled {f['FILLED_FRACTION']:.1f} points and cleared {f['CLEARED_FRACTION']:.1f}"
    return text + "."
