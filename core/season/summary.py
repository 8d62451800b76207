"""The batch summary: ``summary.csv`` and ``summary.gpkg``, one row per product.

The GeoPackage has two layers: ``summary`` (the product's footprint in WGS 84,
so products of several UTM zones share one layer) and, with an area of
several polygons, ``fields`` (one row per product x polygon, no geometry; join
on ``mask``). The CSV files carry the same columns (footprint as WKT). Both
are written to a temporary name and renamed, so a reader never sees half a
summary. The last columns are the SOURCE raster's figures (empty when the batch
did not write it), named as Improve cloud mask's outputs in lower case. A
summary file that cannot be replaced (on Windows: loaded in QGIS, open in a
spreadsheet) does not stop the others: :func:`write_all` writes what it can,
then names the files in use.
"""

from __future__ import annotations

import csv
import os
from dataclasses import asdict, dataclass, field, fields

from osgeo import gdal, ogr

from .. import provenance
from ..errors import SummaryInUseError
from ..staging import IN_FOLDER, FileInUseError, discard, partial_path, swap
from .discovery import wgs84

NAMES = {"csv": "summary.csv", "gpkg": "summary.gpkg", "fields_csv": "summary_fields.csv"}


COLUMNS = (
    "sensed",
    "tile",
    "level",
    "baseline",
    "product",
    "status",
    "error",
    "reused",
    "clear_fraction",
    "cloud_fraction",
    "shadow_fraction",
    "valid_pixels",
    "area_clear_fraction",
    "area_cloud_fraction",
    "area_shadow_fraction",
    "area_valid_pixels",
    "mask",
    "input",
    "seconds",
    "persistent_cloud_share",
    # the SOURCE raster's figures (empty without it), as Improve cloud mask's outputs name them
    "product_mask_fraction",
    "masked_fraction",
    "model_added_fraction",
    "dilation_fraction",
    "filled_fraction",
    "cleared_fraction",
)
FIELD_COLUMNS = (
    "sensed",
    "tile",
    "product",
    "field",
    "clear_fraction",
    "cloud_fraction",
    "shadow_fraction",
    "valid_pixels",
    "mask",
    "persistent_cloud_share",
)
OGR_TYPES = {
    "reused": ogr.OFTInteger,
    "valid_pixels": ogr.OFTInteger64,
    "area_valid_pixels": ogr.OFTInteger64,
    "seconds": ogr.OFTReal,
}


def _type(column: str) -> int:
    if column in OGR_TYPES:
        return OGR_TYPES[column]
    return ogr.OFTReal if column.endswith("fraction") else ogr.OFTString


@dataclass
class FieldRow:
    """One product x one polygon of the area."""

    name: str
    clear_fraction: float = 0.0
    cloud_fraction: float = 0.0
    shadow_fraction: float = 0.0
    valid_pixels: int = 0
    persistent_cloud_share: float | None = None  # of its cloud, on pixels cloudy on most dates (season layers)


@dataclass
class Row:
    """One product's line in the summary."""

    input: str
    product: str = ""
    tile: str = ""
    sensed: str = ""
    level: str = ""
    baseline: str = ""
    status: str = "failed"  # ok | failed
    error: str = ""
    reused: bool = False  # True: an up-to-date mask from an earlier run was kept
    mask: str = ""
    masked: str = ""  # the imagery with the mask applied, when asked for
    clear_fraction: float | None = None
    cloud_fraction: float | None = None
    shadow_fraction: float | None = None
    valid_pixels: int = 0
    area_clear_fraction: float | None = None
    area_cloud_fraction: float | None = None
    area_shadow_fraction: float | None = None
    area_valid_pixels: int | None = None
    seconds: float = 0.0
    footprint: str = ""  # WGS 84 polygon (WKT)
    fields: list[FieldRow] = field(default_factory=list)
    notes: str = ""  # for the log, as Improve cloud mask says it: models, CPU or GPU and why, thresholds
    # Of its cloud, the share on pixels cloudy on most dates of the season (season layers; None: no cloud).
    persistent_cloud_share: float | None = None
    source: str = ""  # the SOURCE raster, when asked for
    # Its figures (provenance.FIGURES, lower-case), fractions of the valid pixels; None: not asked for.
    product_mask_fraction: float | None = None
    masked_fraction: float | None = None
    model_added_fraction: float | None = None
    dilation_fraction: float | None = None
    filled_fraction: float | None = None
    cleared_fraction: float | None = None

    def provenance(self) -> dict | None:
        """The SOURCE figures with the single run's (upper-case) keys; None without them."""
        if self.masked_fraction is None:
            return None
        return {name: getattr(self, name.lower()) for name in provenance.FIGURES}

    def set_provenance(self, figures: dict | None) -> None:
        """The SOURCE figures (upper-case keys, as the single run's outputs); None clears them."""
        for name in provenance.FIGURES:
            setattr(self, name.lower(), None if figures is None else figures[name])

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Row:
        known = {f.name for f in fields(cls)}
        row = cls(**{k: v for k, v in values.items() if k in known})
        row.fields = [FieldRow(**f) for f in values.get("fields", [])]
        return row


def sort_rows(rows: list[Row]) -> list[Row]:
    """Date order (failed rows without a date last), as a user reads a season."""
    return sorted(rows, key=lambda r: (r.sensed == "", r.sensed, r.tile, r.input))


def field_rows(rows: list[Row]) -> list[dict]:
    return [
        {
            "sensed": r.sensed,
            "tile": r.tile,
            "product": r.product,
            "field": f.name,
            "clear_fraction": f.clear_fraction,
            "cloud_fraction": f.cloud_fraction,
            "shadow_fraction": f.shadow_fraction,
            "valid_pixels": f.valid_pixels,
            "mask": r.mask,
            "persistent_cloud_share": f.persistent_cloud_share,
        }
        for r in rows
        for f in r.fields
    ]


def write_csv(rows: list[Row], path: str) -> str:
    tmp = partial_path(path, ".csv")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow((*COLUMNS, "footprint"))
            for row in sort_rows(rows):
                values = row.as_dict()
                writer.writerow([_cell(values[c]) for c in COLUMNS] + [row.footprint])
        swap(tmp, path, IN_FOLDER)
    finally:
        discard(tmp)
    return path


def write_fields_csv(rows: list[Row], path: str) -> str | None:
    table = field_rows(sort_rows(rows))
    if not table:
        return None
    tmp = partial_path(path, ".csv")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=FIELD_COLUMNS)
            writer.writeheader()
            for values in table:
                writer.writerow({k: _cell(v) for k, v in values.items()})
        swap(tmp, path, IN_FOLDER)
    finally:
        discard(tmp)
    return path


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def write_gpkg(rows: list[Row], path: str) -> str:
    """Layer ``summary`` (footprints) and, when there are per-field rows, layer ``fields``."""
    tmp = partial_path(path, ".gpkg")
    try:
        _write_layers(rows, path, tmp)
        swap(tmp, path, IN_FOLDER)
    finally:
        discard(tmp)
    return path


def _write_layers(rows: list[Row], path: str, tmp: str) -> None:
    gdal.ErrorReset()
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(tmp)
    if ds is None:
        raise OSError(f"Cannot create '{path}': {gdal.GetLastErrorMsg()}")
    layer = ds.CreateLayer("summary", wgs84(), ogr.wkbPolygon)
    for column in COLUMNS:
        layer.CreateField(ogr.FieldDefn(column, _type(column)))
    layer.StartTransaction()
    for row in sort_rows(rows):
        feature = ogr.Feature(layer.GetLayerDefn())
        values = row.as_dict()
        for column in COLUMNS:
            _set(feature, column, values[column])
        if row.footprint:
            feature.SetGeometry(ogr.CreateGeometryFromWkt(row.footprint))
        layer.CreateFeature(feature)
    layer.CommitTransaction()
    table = field_rows(sort_rows(rows))
    if table:
        per_field = ds.CreateLayer("fields", None, ogr.wkbNone)
        for column in FIELD_COLUMNS:
            per_field.CreateField(ogr.FieldDefn(column, _type(column)))
        per_field.StartTransaction()
        for values in table:
            feature = ogr.Feature(per_field.GetLayerDefn())
            for column in FIELD_COLUMNS:
                _set(feature, column, values[column])
            per_field.CreateFeature(feature)
        per_field.CommitTransaction()
    ds = None  # closed: the file is complete before it is renamed


def _set(feature: ogr.Feature, column: str, value) -> None:
    if value is None:
        feature.SetFieldNull(column)
    elif isinstance(value, bool):
        feature.SetField(column, int(value))
    else:
        feature.SetField(column, value)


def write_all(rows: list[Row], out_dir: str) -> dict[str, str]:
    """summary.csv, summary.gpkg and (with per-field rows) summary_fields.csv in ``out_dir``.

    Each is written on its own: one in use (SummaryInUseError, raised at the end) does not
    keep the others from being written.
    """
    writers = {"csv": write_csv, "gpkg": write_gpkg, "fields_csv": write_fields_csv}
    written, in_use = {}, []
    for key, write in writers.items():
        try:
            path = write(rows, os.path.join(out_dir, NAMES[key]))
        except FileInUseError as err:
            in_use.append(err)
            continue
        if path:
            written[key] = path
    if in_use:
        raise SummaryInUseError(in_use)
    return written
