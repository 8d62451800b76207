"""The products of a batch: which files the user meant, what each one is, and its mask's name.

A batch input is a Sentinel-2 product (``.zip``, ``.SAFE`` folder, ``MTD_MSIL*.xml``),
a ready band stack (GeoTIFF/VRT, e.g. from Prepare Sentinel-2 product), a folder
of those, or a file pattern (``/data/2025/*.zip``). Each product gets a mask
named after what a user sorts by: its tile and sensing time
(``T33TUK_20230615T100559_L2A.tif``), so a season's masks list in date order
and a rerun finds the same names again.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass

from osgeo import gdal, ogr, osr

from ..errors import InputError
from ..raster import raster_info
from ..sentinel2 import product as s2_product

# Files a folder is searched for when the user gives just the folder.
FOLDER_PATTERNS = ("*.zip", "*.SAFE", "*.tif", "*.tiff", "*.vrt")
# ESA's product name: S2B_MSIL2A_20230615T100559_N0400_R022_T33TUK_20230615T130000
PRODUCT_NAME = re.compile(r"MSI(L1C|L2A)_(\d{8}T\d{6})_N(\d{4})_R\d{3}_(T\d{2}[A-Z]{3})_", re.IGNORECASE)
TILE_ONLY = re.compile(r"(?:^|_)(T\d{2}[A-Z]{3})(?:_|$)")
DATE_ONLY = re.compile(r"(?:^|_)(\d{8}T\d{6})(?:_|$)")


def expand_inputs(inputs: list[str], pattern: str = "") -> list[str]:
    """Every product or raster the inputs name, each once, in a stable (sorted) order.

    A product folder (``.SAFE``) is one product; any other folder is searched (not
    recursively) for ``pattern`` or the usual product and raster files; a glob is
    expanded. Paths that do not exist are kept: their row in the summary says so.
    """
    found: list[str] = []
    for raw in inputs:
        item = os.path.expanduser(str(raw).strip())
        if not item:
            continue
        if any(c in item for c in "*?[") and not os.path.exists(item):
            found.extend(sorted(glob.glob(item)) or [item])
        elif os.path.isdir(item) and not _product_folder(item):
            patterns = [p.strip() for p in pattern.split(",") if p.strip()] or list(FOLDER_PATTERNS)
            hits = sorted({h for p in patterns for h in glob.glob(os.path.join(item, p))})
            if not hits:
                raise InputError(
                    f"The folder '{item}' holds no file matching {', '.join(patterns)}. "
                    "Give the products themselves or another file pattern."
                )
            found.extend(hits)
        else:
            found.append(item)
    unique = {os.path.abspath(p) if "://" not in p and not p.startswith("/vsi") else p: None for p in found}
    return list(unique)


def _product_folder(folder: str) -> bool:
    """A ``.SAFE`` folder (or one holding the metadata file); not a folder that holds products."""
    return folder.rstrip("/").upper().endswith(".SAFE") or any(
        os.path.exists(os.path.join(folder, name)) for name in s2_product.METADATA_FILES
    )


@dataclass(frozen=True)
class Identity:
    """What tells whether an input changed since its mask was made (cheap: no pixel is read)."""

    path: str
    size: int
    mtime_ns: int

    def as_dict(self) -> dict:
        return {"path": self.path, "size": self.size, "mtime_ns": self.mtime_ns}


def identity(source: str) -> Identity:
    """Size and time of the file itself, or of the metadata file of a ``.SAFE`` folder."""
    path = os.path.abspath(source)
    if os.path.isdir(path):
        metadata = s2_product.find_metadata(path)
        stat_path = metadata if metadata and os.path.exists(metadata) else path
    else:
        stat_path = path
    try:
        stat = os.stat(stat_path)
    except OSError as err:
        raise InputError(f"'{source}' does not exist or cannot be read ({err.strerror}). Check the path.") from err
    return Identity(path, stat.st_size, stat.st_mtime_ns)


@dataclass(frozen=True)
class Description:
    """What the summary says of a product besides its mask."""

    tile: str = ""
    sensed: str = ""  # ISO date and time, e.g. 2023-06-15T10:05:59
    level: str = ""
    baseline: str = ""
    product: str = ""  # the product's name (no .SAFE), or the raster's file name


def fields_from_name(name: str) -> dict:
    """Tile, sensing time, level and baseline that ESA's file naming gives away (whatever is there)."""
    match = PRODUCT_NAME.search(name)
    if match:
        level, stamp, baseline, tile = match.groups()
        return {
            "tile": tile.upper(),
            "sensed": _iso(stamp),
            "level": level.upper(),
            "baseline": f"{baseline[:2]}.{baseline[2:]}",
        }
    found = {}
    tile, stamp = TILE_ONLY.search(name), DATE_ONLY.search(name)
    if tile:
        found["tile"] = tile.group(1).upper()
    if stamp:
        found["sensed"] = _iso(stamp.group(1))
    return found


def _iso(stamp: str) -> str:
    return f"{stamp[0:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}"


def describe(source: str) -> Description:
    """Tile, sensing time, level and baseline from the product name (ESA's naming) and metadata.

    A stack made from a product records the product (``S2_PRODUCT``), so it is
    described like the product; any other raster by its file name and metadata.
    """
    if s2_product.is_product(source):
        product = s2_product.read_product(source)
        name = product.name.removesuffix(".SAFE")
        found = {**fields_from_name(name), "level": product.level, "baseline": product.baseline}
        return Description(product=name, **found)
    info = raster_info(source, "Sentinel-2 raster")
    origin = str(info.metadata.get("S2_PRODUCT", ""))
    name = os.path.basename(origin.rstrip("/")) if origin else os.path.basename(source)
    if name in s2_product.METADATA_FILES:
        name = os.path.basename(os.path.dirname(origin))
    name = re.sub(r"\.(SAFE|zip|tif|tiff|vrt)$", "", name, flags=re.IGNORECASE)
    found = fields_from_name(name) or fields_from_name(os.path.basename(source))
    level = str(info.metadata.get("PROCESSING_LEVEL", found.get("level", "")))
    found["level"] = "L1C" if "1C" in level.upper() else "L2A" if "2A" in level.upper() else ""
    found["baseline"] = str(info.metadata.get("PROCESSING_BASELINE", found.get("baseline", "")))
    return Description(product=name, **found)


def describe_by_name(source: str) -> Description:
    """What the file name alone tells (for an input that cannot be read)."""
    name = os.path.basename(os.path.abspath(source).rstrip("/"))
    return Description(product=re.sub(r"\.(SAFE|zip)$", "", name, flags=re.IGNORECASE), **fields_from_name(name))


def mask_name(description: Description, source: str) -> str:
    """``<tile>_<sensing time>_<level>`` when known, else the input's own name."""
    if description.tile and description.sensed:
        stamp = description.sensed.replace("-", "").replace(":", "")
        return "_".join(p for p in (description.tile, stamp, description.level) if p)
    stem = os.path.basename(os.path.abspath(source).rstrip("/"))
    stem = re.sub(r"\.(SAFE|zip|tif|tiff|vrt|xml)$", "", stem, flags=re.IGNORECASE)
    return re.sub(r"[^\w.-]+", "_", stem) or "product"


def unique_names(names: list[str]) -> list[str]:
    """Two inputs of the same tile and time (a reprocessed product) get ``_2``, ``_3``... in input order.

    So names stay the same from one run to the next."""
    seen: dict[str, int] = {}
    result = []
    for name in names:
        count = seen.get(name, 0) + 1
        seen[name] = count
        result.append(name if count == 1 else f"{name}_{count}")
    return result


def footprint_wkt(source: str, densify: int = 4) -> str:
    """The raster's outline as a WGS 84 polygon (lon/lat), for the summary layer."""
    info = raster_info(source)
    gt = info.geotransform
    x0, y0 = gt[0], gt[3]
    x1, y1 = gt[0] + gt[1] * info.width, gt[3] + gt[5] * info.height
    ring = ogr.Geometry(ogr.wkbLinearRing)
    corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
    for (ax, ay), (bx, by) in zip(corners, corners[1:]):
        for k in range(densify):  # curved in lon/lat: a few points per side
            ring.AddPoint_2D(ax + (bx - ax) * k / densify, ay + (by - ay) * k / densify)
    ring.AddPoint_2D(x0, y0)
    polygon = ogr.Geometry(ogr.wkbPolygon)
    polygon.AddGeometry(ring)
    if info.projection:
        src = osr.SpatialReference()
        src.ImportFromWkt(info.projection)
        src.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        polygon.AssignSpatialReference(src)
        polygon.TransformTo(wgs84())
    return polygon.ExportToWkt()


def wgs84() -> osr.SpatialReference:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def gdal_version() -> str:
    return gdal.__version__
