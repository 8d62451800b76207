"""Season layers: per Sentinel-2 tile, how often each pixel was seen, clear and cloudy.

From the batch's masks of one tile this writes, beside the masks:

- ``season_<tile>_valid.tif``: dates on which the pixel had data (not nodata);
- ``season_<tile>_clear.tif``: dates on which it was clear;
- ``season_<tile>_cloud_frequency.tif``: cloudy dates / valid dates (-1 where never valid);
- ``season_<tile>_persistent.tif``: 1 where the pixel is cloud on at least ``share`` of its
  valid dates and has at least ``min_dates`` valid dates, 0 where not, 255 where it has too
  few valid dates to tell. Real clouds move; a pixel called cloud on nearly every date is
  the signature of bright ground (sand, snow, greenhouses, a bright roof) taken for cloud.

"Cloudy" is the mask's cloud class only: shadows move with the clouds and the sun, so
persistent shadow says little about the ground (in the binary output mode the one
class is cloud or shadow, and that is what is counted).

Grouping: masks are grouped by tile and grid (CRS, pixel size, origin and size). Products
of one tile share the tile's grid, and stacks cut to the same extent share a grid too.
Products of one tile on different grids (another resolution, another area) cannot be
counted pixel by pixel together: each grid gets its own layers (``season_<tile>_grid2_...``)
and the log says which products are apart.

Memory is bounded: every mask is read in full-width row windows (as the merge does), so
a full tile of a long season needs a few window-sized arrays, not the season in memory.
Each pass reads the window of each mask twice: once to count, once to measure how much
of each product's cloud falls on persistent pixels (the share added to the summary).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np
from osgeo import gdal, osr

from .. import area as areas
from .. import merge
from ..choices import PERSISTENT_MIN_DATES, PERSISTENT_SHARE
from ..errors import SettingsError
from ..progress import Cancelled, Feedback, Share
from ..raster import GTIFF_OPTIONS, RasterError, open_dataset
from ..staging import atomic_outputs, stage

# Defaults chosen on the sample season (test/season_scene.py; figures in docs/usage.md): 12
# dates of real clouds moved about (37-49 % of each date cloud after dilation) and a patch
# the model calls cloud on every date. The patch's core is cloud on 12/12 dates, the most
# clouded pixel outside it on 10/12 (83 %): 0.9 finds the patch and no moving cloud. Over
# the first n dates, n = 4..9 and 12 flag no moving cloud, n = 10 and 11 flag 172 px
# (0.5 %) at 9/10 and 10/11. Below 5 valid dates (3 dates flag 71 px) one or two unlucky
# dates decide, so those pixels are left undecided (255).
DEFAULT_SHARE = PERSISTENT_SHARE  # in choices.py: the toolbox offers them without the engine
DEFAULT_MIN_DATES = PERSISTENT_MIN_DATES
# Above this share of a product's cloud on persistent pixels, the log says its clear
# fraction is likely too low (a quarter of the cloud being ground changes a date's ranking).
LARGE_SHARE = 0.25
WINDOW_ROWS = 256  # the masks' block height: each window reads whole blocks
LAYERS = ("valid", "clear", "cloud_frequency", "persistent")
PERSISTENT_UNKNOWN = 255
# Written into every season layer: a folder given as products may be the output folder, and a
# rerun must not take the season layers for products (as it once took its own masks).
SEASON_TAG = "CLOUDMASK_SEASON_LAYER"
FREQUENCY_NODATA = -1.0


@dataclass(frozen=True)
class SeasonSettings:
    """When a pixel counts as persistently flagged."""

    share: float = DEFAULT_SHARE
    min_dates: int = DEFAULT_MIN_DATES

    def validate(self) -> None:
        if not 0 < self.share <= 1:
            raise SettingsError(
                f"The share of dates for persistent cloud must be above 0 and at most 1, "
                f"got {self.share}. Give e.g. {DEFAULT_SHARE} (cloud on 90 % of the dates)."
            )
        if int(self.min_dates) != self.min_dates or self.min_dates < 1:
            raise SettingsError(
                f"The minimum number of valid dates must be a whole number of at least 1, "
                f"got {self.min_dates}. Give e.g. {DEFAULT_MIN_DATES}."
            )


@dataclass
class Group:
    """The masks of one tile on one grid, in date order."""

    tile: str
    name: str  # file prefix, e.g. season_T33TUK
    rows: list = field(default_factory=list)  # batch.Row, ok, with a mask


@dataclass
class TileSeason:
    """What one group's layers hold, for the log and the report."""

    name: str
    tile: str
    dates: int
    pixels: int = 0
    decided: int = 0  # pixels with at least min_dates valid dates
    persistent: int = 0
    valid_sum: int = 0
    clear_sum: int = 0
    cloud_sum: int = 0
    paths: dict[str, str] = field(default_factory=dict)

    @property
    def persistent_fraction(self) -> float:
        return self.persistent / self.decided if self.decided else 0.0

    @property
    def mean_valid(self) -> float:
        return self.valid_sum / self.pixels if self.pixels else 0.0

    @property
    def mean_clear(self) -> float:
        return self.clear_sum / self.pixels if self.pixels else 0.0

    @property
    def cloud_frequency(self) -> float:
        return self.cloud_sum / self.valid_sum if self.valid_sum else 0.0


@dataclass
class SeasonResult:
    tiles: list[TileSeason] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)  # for the log: grids apart, large shares
    settings: SeasonSettings = field(default_factory=SeasonSettings)


def _grid(path: str) -> tuple:
    ds = open_dataset(path, "mask")
    gt = tuple(round(v, 6) for v in ds.GetGeoTransform())
    return (ds.RasterXSize, ds.RasterYSize, gt, _crs_key(ds.GetProjection()))


def _crs_key(wkt: str) -> str:
    """The same CRS written two ways (a tool's WKT1, another's WKT2) is one CRS."""
    if not wkt:
        return ""
    srs = osr.SpatialReference()
    srs.ImportFromWkt(wkt)
    srs.AutoIdentifyEPSG()
    code = srs.GetAuthorityCode(None)
    return f"EPSG:{code}" if code else srs.ExportToProj4()


def group_masks(rows: list) -> tuple[list[Group], list[str]]:
    """The ok rows' masks by tile and grid; the largest grid of a tile gets the plain name."""
    by_key: dict[tuple, list] = {}
    for row in rows:
        if row.ok and row.mask and os.path.exists(row.mask):
            by_key.setdefault((row.tile, _grid(row.mask)), []).append(row)
    by_tile: dict[str, list[list]] = {}
    for (tile, _), members in by_key.items():
        by_tile.setdefault(tile, []).append(members)
    groups, messages = [], []
    for tile in sorted(by_tile):
        grids = sorted(by_tile[tile], key=lambda m: (-len(m), m[0].sensed, m[0].mask))
        base = "season_" + (_safe_name(tile) or "scene")
        for index, members in enumerate(grids, start=1):
            name = base if index == 1 else f"{base}_grid{index}"
            members = sorted(members, key=lambda r: (r.sensed, r.mask))
            groups.append(Group(tile, name, members))
            if index > 1:
                messages.append(
                    f"{tile or 'Rasters without a tile'}: {len(members)} product(s) are on another grid (another "
                    f"resolution or extent) than the other {len(grids[0])}: their season layers are "
                    f"{name}_*.tif ({', '.join(r.sensed or r.product for r in members)})."
                )
    return groups, messages


def is_season_layer(path: str) -> bool:
    """A season layer an earlier batch wrote (named season_*.tif and tagged so)."""
    name = os.path.basename(path).lower()
    if not (name.startswith("season_") and name.endswith(".tif")):
        return False
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        ds = gdal.Open(path)
        return ds is not None and ds.GetMetadataItem(SEASON_TAG) is not None
    finally:
        gdal.PopErrorHandler()


def _safe_name(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text)


def build(
    rows: list,
    out_dir: str,
    settings: SeasonSettings | None = None,
    area: areas.Area | None = None,
    feedback: Feedback | None = None,
) -> SeasonResult:
    """Write every group's season layers and fill each row's (and field's) persistent cloud share."""
    settings = settings or SeasonSettings()
    settings.validate()
    feedback = feedback or Feedback()
    groups, messages = group_masks(rows)
    result = SeasonResult(messages=messages, settings=settings)
    total = sum(len(g.rows) for g in groups) or 1
    done = 0
    for group in groups:
        start, end = done / total, (done + len(group.rows)) / total
        result.tiles.append(_build_group(group, out_dir, settings, area, Share(feedback, start, end)))
        done += len(group.rows)
    result.messages.extend(_large_shares(rows))
    return result


def _build_group(
    group: Group, out_dir: str, settings: SeasonSettings, area: areas.Area | None, feedback: Feedback
) -> TileSeason:
    masks = [open_dataset(r.mask, "mask") for r in group.rows]
    first = masks[0]
    width, height = first.RasterXSize, first.RasterYSize
    season = TileSeason(group.name, group.tile, len(masks), pixels=width * height)
    on_persistent = np.zeros(len(masks), dtype=np.int64)
    cloud = np.zeros(len(masks), dtype=np.int64)
    fields = len(area.wkts) if area is not None else 0
    field_on = np.zeros((len(masks), fields + 1), dtype=np.int64)
    field_cloud = np.zeros((len(masks), fields + 1), dtype=np.int64)
    with atomic_outputs() as pending:
        outputs = {}
        for layer in LAYERS:
            final = os.path.join(out_dir, f"{group.name}_{layer}.tif")
            outputs[layer] = _create(stage(pending, final), first, layer)
            season.paths[layer] = final
        try:
            for lo in range(0, height, WINDOW_ROWS):
                if feedback.cancelled():
                    raise Cancelled("Cancelled by the user.")
                rows_here = min(WINDOW_ROWS, height - lo)
                valid, clear, cloudy = _count(masks, lo, rows_here)
                persistent = _persistent(valid, cloudy, settings)
                _write(outputs, lo, valid, clear, cloudy, persistent)
                _tally(season, valid, clear, cloudy, persistent)
                ids = _field_ids(area, group.rows[0].mask, lo, width, rows_here)
                _shares(masks, lo, rows_here, persistent == 1, ids, on_persistent, cloud, field_on, field_cloud)
                _release(outputs, masks)
                feedback.progress((lo + rows_here) / height)
        finally:
            _close(outputs)  # closed before the rename (and before removal on failure, for Windows)
    _fill_rows(group.rows, on_persistent, cloud, field_on, field_cloud)
    return season


def _create(path: str, like: gdal.Dataset, layer: str) -> gdal.Dataset:
    types = {
        "valid": gdal.GDT_UInt16,
        "clear": gdal.GDT_UInt16,
        "cloud_frequency": gdal.GDT_Float32,
        "persistent": gdal.GDT_Byte,
    }
    ds = gdal.GetDriverByName("GTiff").Create(
        path, like.RasterXSize, like.RasterYSize, 1, types[layer], options=GTIFF_OPTIONS
    )
    if ds is None:
        raise RasterError(
            f"Cannot write the season layer '{path}': {gdal.GetLastErrorMsg()}. "
            "Check the free disk space and that the output folder can be written."
        )
    ds.SetGeoTransform(like.GetGeoTransform())
    ds.SetProjection(like.GetProjection())
    ds.SetMetadataItem(SEASON_TAG, layer)
    band = ds.GetRasterBand(1)
    band.SetDescription(
        {
            "valid": "valid dates",
            "clear": "clear dates",
            "cloud_frequency": "cloudy / valid dates",
            "persistent": "cloud on most dates",
        }[layer]
    )
    if layer == "cloud_frequency":
        band.SetNoDataValue(FREQUENCY_NODATA)
    if layer == "persistent":
        band.SetNoDataValue(PERSISTENT_UNKNOWN)
        colours = gdal.ColorTable()
        colours.SetColorEntry(0, (0, 0, 0, 0))
        colours.SetColorEntry(1, (230, 0, 170, 255))  # magenta: stands out over imagery and masks
        band.SetColorTable(colours)
        band.SetCategoryNames(["not persistent", "cloud on most dates"])
    return ds


def _release(outputs: dict, masks: list) -> None:
    """Write this window's blocks and drop the masks' from GDAL's cache.

    Otherwise the cache (5 % of the memory by default) fills with the whole season's layers and
    masks before anything is written, and memory grows with the tile and the number of dates."""
    for ds in (*outputs.values(), *masks):
        ds.FlushCache()


def _close(outputs: dict) -> None:
    for layer in list(outputs):
        outputs[layer].FlushCache()
        outputs[layer] = None


def _count(masks: list, lo: int, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Valid, clear and cloudy dates of each pixel of the window."""
    shape = (rows, masks[0].RasterXSize)
    valid, clear, cloudy = (np.zeros(shape, dtype=np.uint16) for _ in range(3))
    for ds in masks:
        block = ds.GetRasterBand(1).ReadAsArray(0, lo, shape[1], rows)
        valid += block != merge.NODATA
        clear += block == merge.CLEAR
        cloudy += block == merge.CLOUD
    return valid, clear, cloudy


def _persistent(valid: np.ndarray, cloudy: np.ndarray, settings: SeasonSettings) -> np.ndarray:
    """1: cloud on at least ``share`` of at least ``min_dates`` valid dates; 0: not; 255: too few dates."""
    out = np.where(cloudy >= settings.share * valid - 1e-9, 1, 0).astype(np.uint8)  # 1e-9: 0.8 x 10 is 8
    out[valid < settings.min_dates] = PERSISTENT_UNKNOWN
    return out


def _write(outputs: dict, lo: int, valid, clear, cloudy, persistent) -> None:
    frequency = np.full(valid.shape, FREQUENCY_NODATA, dtype=np.float32)
    seen = valid > 0
    frequency[seen] = cloudy[seen] / valid[seen]
    for layer, values in (
        ("valid", valid),
        ("clear", clear),
        ("cloud_frequency", frequency),
        ("persistent", persistent),
    ):
        outputs[layer].GetRasterBand(1).WriteArray(values, 0, lo)


def _tally(season: TileSeason, valid, clear, cloudy, persistent) -> None:
    season.valid_sum += int(valid.sum(dtype=np.int64))
    season.clear_sum += int(clear.sum(dtype=np.int64))
    season.cloud_sum += int(cloudy.sum(dtype=np.int64))
    season.decided += int((persistent != PERSISTENT_UNKNOWN).sum())
    season.persistent += int((persistent == 1).sum())


def _field_ids(area, mask: str, lo: int, width: int, rows: int) -> np.ndarray | None:
    if area is None:
        return None
    return areas.polygon_ids(area, mask, areas.Window(0, lo, width, rows))


def _shares(
    masks: list, lo: int, rows: int, persistent: np.ndarray, ids, on_persistent, cloud, field_on, field_cloud
) -> None:
    """Count each product's cloud pixels, and those on persistent pixels (per field with an area)."""
    width = masks[0].RasterXSize
    for index, ds in enumerate(masks):
        is_cloud = ds.GetRasterBand(1).ReadAsArray(0, lo, width, rows) == merge.CLOUD
        cloud[index] += int(is_cloud.sum())
        on_persistent[index] += int((is_cloud & persistent).sum())
        if ids is not None:
            bins = field_on.shape[1]
            field_cloud[index] += np.bincount(ids[is_cloud].ravel(), minlength=bins)[:bins]
            field_on[index] += np.bincount(ids[is_cloud & persistent].ravel(), minlength=bins)[:bins]


def _fill_rows(rows: list, on_persistent, cloud, field_on, field_cloud) -> None:
    """The share of each product's (and field's) cloud that falls on persistent pixels; None: no cloud."""
    for index, row in enumerate(rows):
        row.persistent_cloud_share = _ratio(on_persistent[index], cloud[index])
        for number, field_row in enumerate(row.fields, start=1):
            if number < field_cloud.shape[1]:
                field_row.persistent_cloud_share = _ratio(field_on[index, number], field_cloud[index, number])


def _ratio(part: int, whole: int) -> float | None:
    return round(float(part) / float(whole), 6) if whole else None


def _large_shares(rows: list) -> list[str]:
    """Products and fields whose cloud is largely on persistent pixels: their clear fraction is too low."""
    said = []
    for row in rows:
        share = getattr(row, "persistent_cloud_share", None)
        if share is not None and share >= LARGE_SHARE:  # None: no cloud at all
            said.append(
                f"{row.sensed or row.product}: {100 * share:.0f} % of its cloud is on pixels called cloud on "
                "most dates of the season (bright ground taken for cloud?): its clear fraction is likely "
                "too low. See the persistent layer."
            )
        for field_row in row.fields:
            share = field_row.persistent_cloud_share
            if share is not None and share >= LARGE_SHARE:
                said.append(
                    f"{row.sensed or row.product}, field {field_row.name}: {100 * share:.0f} % of its cloud "
                    "is on pixels called cloud on most dates of the season."
                )
    return said
