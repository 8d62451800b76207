"""Sentinel-2 band names and the mapping from raster bands to them.

Models name the bands they read; rasters may or may not say which band is
which. We map by name, detected from band descriptions when present, else
from the band count (FarmVibes.AI's 12-band stack, or all 13 bands), else the
user gives the list.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .errors import BandError

# In the order of the all-bands (13) stack: B8A after B08.
ALL_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
# FarmVibes.AI's stack: L2A has no B10.
FARMVIBES_BANDS = tuple(b for b in ALL_BANDS if b != "B10")

ALIASES = {
    "coastal": "B01",
    "aerosol": "B01",
    "blue": "B02",
    "green": "B03",
    "red": "B04",
    "rededge1": "B05",
    "rededge2": "B06",
    "rededge3": "B07",
    "nir": "B08",
    "nir08": "B8A",
    "narrownir": "B8A",
    "rededge4": "B8A",
    "watervapour": "B09",
    "watervapor": "B09",
    "cirrus": "B10",
    "swir1": "B11",
    "swir16": "B11",
    "swir2": "B12",
    "swir22": "B12",
}


def normalise(name: str) -> str | None:
    """Canonical band name (``B8A``, ``B02``) for a name, alias or description, or None."""
    text = name.strip().lower().replace(" ", "").replace("_", "").replace("-", "")
    if text in ALIASES:
        return ALIASES[text]
    # "Band 1" style descriptions are GDAL defaults, not Sentinel-2 names.
    match = re.fullmatch(r"b0?(\d{1,2}|8a)", text)
    if not match:
        # Descriptions such as "B04 (red)" or "B8A: 865 nm" start with the name.
        match = re.match(r"b0?(\d{1,2}|8a)(?![0-9a-z])", text)
    if not match:
        return None
    number = match.group(1).upper()
    canonical = "B8A" if number == "8A" else f"B{int(number):02d}"
    return canonical if canonical in ALL_BANDS else None


def parse_band_list(text: str) -> list[str]:
    """Parse the ``BANDS`` parameter (comma-separated names, one per raster band)."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    mapped = []
    for name in names:
        canonical = normalise(name)
        if canonical is None:
            raise BandError(
                f"Unknown band name '{name}' in the band list. Use Sentinel-2 names "
                f"({', '.join(ALL_BANDS)}) or aliases such as blue, red, nir, swir16."
            )
        mapped.append(canonical)
    duplicates = sorted({b for b in mapped if mapped.count(b) > 1})
    if duplicates:
        raise BandError(
            f"Band {', '.join(duplicates)} is listed twice in the band list; "
            "give each raster band its own Sentinel-2 name."
        )
    return mapped


def detect_bands(descriptions: Sequence[str], user_bands: str = "") -> list[str]:
    """Sentinel-2 name of each raster band, in raster order.

    Order of trust: the user's list, then band descriptions (when every band
    has a recognisable, distinct name), then the band count.
    """
    count = len(descriptions)
    if user_bands.strip():
        mapped = parse_band_list(user_bands)
        if len(mapped) != count:
            raise BandError(
                f"The band list names {len(mapped)} bands but the raster has {count}. "
                "Give one Sentinel-2 name per raster band, in order."
            )
        return mapped
    # Every description must name a band, each a different one.
    from_names = [name for name in (normalise(d) for d in descriptions if d) if name]
    if len(set(from_names)) == count:
        return from_names
    if count == len(FARMVIBES_BANDS):
        return list(FARMVIBES_BANDS)
    if count == len(ALL_BANDS):
        return list(ALL_BANDS)
    raise BandError(
        f"Cannot tell which Sentinel-2 band each of the raster's {count} bands is: "
        "the band descriptions do not name them and the count is neither 12 (B01-B12 "
        "without B10) nor 13 (B01-B12 with B8A after B08). Give the band list "
        "(parameter BANDS), e.g. 'B02,B03,B04,B08'."
    )


def band_indices(raster_bands: Sequence[str], wanted: Sequence[str], model: str = "") -> list[int]:
    """0-based raster band index for each band a model reads, in model order."""
    missing = [b for b in wanted if b not in raster_bands]
    if missing:
        who = f"Model '{model}'" if model else "The model"
        raise BandError(
            f"{who} needs band {', '.join(missing)}, which the raster does not have "
            f"(it has {', '.join(raster_bands)}). Choose a model that reads only these "
            "bands, or give a raster that includes the missing band."
        )
    return [list(raster_bands).index(b) for b in wanted]
