"""Apply an improved cloud mask to any raster: the chosen classes become nodata.

The raster (a Sentinel-2 stack, one band, an index such as NDVI) keeps its grid,
bands, data type, band descriptions, colour interpretation and metadata; only
the masked pixels change. Two passes, both in windows so that memory does not
grow with the raster (a full 10980 px tile never loads whole):

1. The *selection*: which pixels of the mask are to be removed, on the mask's own
   grid (the chosen classes, cloud and shadow grown by the buffer's disk), into
   a temporary uint8 GeoTIFF.
2. The selection is brought onto the raster's grid and the raster is copied
   window by window, the selected pixels set to each band's nodata value.

Rules (docs/usage.md, "Apply cloud mask"):

- Another grid or CRS: the selection is warped with GDAL's ``max`` resampling,
  so a raster pixel is masked when *any* selected mask pixel overlaps it, however
  little: a coarser raster never lets a cloudy pixel through, and a finer one is
  masked over the whole footprint of each cloudy mask pixel.
- Raster pixels outside the mask count as the mask's nodata: masked when the
  nodata class is chosen, kept otherwise.
- The buffer grows cloud and shadow, never nodata: the edge of a scene is not a cloud.
- Output nodata: each band's declared nodata; where a band declares none, NaN for
  floating-point bands, the type's minimum for signed integers (-32768 for
  int16, GDAL's usual choice) and its maximum for unsigned ones (255, 65535,
  ...), declared in the output. A raster with an alpha band gets alpha 0
  (transparent) there instead, and its bands without a nodata value keep their
  values: white must stay white in an RGBA picture.
"""

from __future__ import annotations

import math
import os
import tempfile
import traceback
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from osgeo import gdal, gdal_array, osr

from . import merge
from .choices import MASKED_CLASSES
from .errors import MaskInputError, SettingsError
from .progress import Cancelled, Feedback, Share
from .raster import (
    FLOAT_OPTIONS,
    GTIFF_OPTIONS,
    RasterError,
    RasterInfo,
    create_geotiff,
    gdal_try,
    limited_block_cache,
    open_dataset,
    raster_info,
    read_failed,
    require_georeference,
    require_geotiff_name,
    require_north_up,
)
from .regrid import footprint, on_the_grid
from .staging import atomic_outputs, check_destination, stage

CLASSES = MASKED_CLASSES  # index order is public API (the CLASSES parameter)
WINDOW = 1024  # pixels per side of a window: 13 uint16 bands are 27 MB
MASK_ROWS = 1024  # rows of the mask per window of the selection pass
OUTSIDE = 255  # the warped selection's value where the raster lies outside the mask
# 64-bit whole numbers (GDAL >= 3.5): their nodata is set and read as an int.
WIDE_INTEGERS = tuple(getattr(gdal, name) for name in ("GDT_Int64", "GDT_UInt64") if hasattr(gdal, name))
APPLIED_KEY = "CLOUD_MASK_APPLIED"  # metadata of the output: the mask's file name, classes and buffer


@dataclass(frozen=True)
class MaskKind:
    """Which values of a cloud mask mean what, and its nodata value.

    Categorical (0 clear, 1 cloud, 2 shadow) or binary (0 clear, 1 cloud or shadow)."""

    binary: bool
    nodata: int

    def values(self, classes: tuple[str, ...]) -> tuple[int, ...]:
        """The values of the cloud and shadow classes chosen (nodata apart)."""
        if self.binary:  # cloud and shadow are one class: either choice removes it
            return (merge.CLOUD,) if {"cloud", "shadow"} & set(classes) else ()
        return tuple(v for name, v in (("cloud", merge.CLOUD), ("shadow", merge.SHADOW)) if name in classes)

    def allowed(self) -> tuple[int, ...]:
        if self.binary:
            return (merge.CLEAR, merge.CLOUD, self.nodata)
        return (merge.CLEAR, merge.CLOUD, merge.SHADOW, self.nodata)


@dataclass(frozen=True)
class ApplyResult:
    """What the run did, for the log and the algorithm's outputs."""

    masked_pixels: int
    total_pixels: int
    nodata: tuple[float | None, ...]  # per band, as declared in the output; None: none (the alpha band says)
    alpha: bool  # the raster has an alpha band: 0 where masked
    binary_mask: bool
    radius_px: int
    warped: bool
    nodata_clashes: int  # kept pixels whose value is the nodata chosen for a band without one

    @property
    def masked_fraction(self) -> float:
        return self.masked_pixels / self.total_pixels if self.total_pixels else 0.0


def mask_kind(mask: str) -> MaskKind:
    """Read what the mask's values mean from its class names; refuse a raster that is not a cloud mask."""
    ds = open_dataset(mask, "cloud mask")
    band = ds.GetRasterBand(1)
    if ds.RasterCount != 1 or band.DataType != gdal.GDT_Byte:
        raise MaskInputError(
            f"'{mask}' is not a cloud mask: it has {ds.RasterCount} band(s) of type "
            f"{gdal.GetDataTypeName(band.DataType)}, where a mask made by Improve cloud mask has one band of "
            "bytes (0 clear, 1 cloud, 2 shadow, 255 nodata). Give the mask Improve cloud mask wrote."
        )
    nodata = band.GetNoDataValue()
    nodata = merge.NODATA if nodata is None else int(nodata)
    names = [n.strip().lower() for n in (band.GetCategoryNames() or [])]
    categorical = [merge.CATEGORY_NAMES[v] for v in (merge.CLEAR, merge.CLOUD, merge.SHADOW)]
    binary = [merge.BINARY_CATEGORY_NAMES[v] for v in (merge.CLEAR, merge.CLOUD)]
    if not names or names[:3] == categorical:
        return MaskKind(binary=False, nodata=nodata)  # no names: our encoding, checked value by value
    if names[:2] == binary:
        return MaskKind(binary=True, nodata=nodata)
    shown = ", ".join(f"{i} {n}" for i, n in enumerate(names) if n)
    raise MaskInputError(
        f"'{mask}' is not a cloud mask made by Improve cloud mask: its classes are {shown}. Give the "
        "improved mask (0 clear, 1 cloud, 2 shadow, 255 nodata), or make one with Improve cloud mask."
    )


def buffer_pixels(buffer_m: float, mask: RasterInfo) -> int:
    """The buffer as a disk radius in the mask's pixels, rounded up: never less than asked."""
    if not buffer_m > 0:
        return 0
    srs = osr.SpatialReference()
    srs.ImportFromWkt(mask.projection)
    if not srs.IsProjected():
        raise MaskInputError(
            f"The buffer is in metres, but the mask '{mask.source}' is in a geographic CRS (degrees). "
            "Set the buffer to 0, or use a mask in a projected CRS (Improve cloud mask writes it in the "
            "Sentinel-2 raster's UTM zone)."
        )
    metres = mask.pixel_size * srs.GetLinearUnits()
    return math.ceil(round(buffer_m / metres, 6))


def check_inputs(raster: str, mask: str, classes: tuple[str, ...], buffer_m: float) -> tuple[RasterInfo, RasterInfo]:
    """Every refusal, before any pixel is read."""
    unknown = [c for c in classes if c not in CLASSES]
    if unknown or not classes:
        raise SettingsError(
            f"Choose at least one class to mask among {', '.join(CLASSES)}"
            f"{'; unknown: ' + ', '.join(unknown) if unknown else ''}."
        )
    if not (buffer_m >= 0) or math.isinf(buffer_m):
        raise SettingsError(f"The buffer must be 0 or more metres, got {buffer_m!r}.")
    grid = raster_info(raster, "raster to mask")
    require_georeference(grid, "raster to mask")
    require_north_up(grid, "raster to mask")
    if grid.band_count == 0:
        raise MaskInputError(f"The raster '{raster}' has no bands: there is nothing to mask.")
    _check_data_types(raster)
    info = raster_info(mask, "cloud mask")
    require_georeference(info, "cloud mask")
    require_north_up(info, "cloud mask")
    mask_kind(mask)
    a, b = footprint(info, grid.projection), grid.bounds
    if a[0] >= b[2] or a[2] <= b[0] or a[1] >= b[3] or a[3] <= b[1]:
        raise MaskInputError(
            f"The cloud mask '{mask}' does not overlap the raster '{raster}'. Use the mask of "
            "the same scene (or of a scene that covers the raster)."
        )
    return grid, info


def _check_data_types(raster: str) -> None:
    ds = open_dataset(raster, "raster to mask")
    types = {ds.GetRasterBand(i + 1).DataType for i in range(ds.RasterCount)}
    if len(types) > 1:
        raise MaskInputError(
            f"The bands of '{raster}' have different data types "
            f"({', '.join(sorted(gdal.GetDataTypeName(t) for t in types))}); a GeoTIFF holds "
            "one. Convert them to one type first (Raster > Conversion > Translate)."
        )
    kind = gdal.GetDataTypeName(types.pop())
    if kind.startswith("C"):
        raise MaskInputError(
            f"'{raster}' holds complex numbers ({kind}), which have no nodata value to mark "
            "masked pixels. Mask a real-valued raster (e.g. its amplitude)."
        )


def default_nodata(dtype: np.dtype) -> float | int:
    """A nodata value for a band that declares none (see the module's docstring).

    Whole numbers stay Python ints: 2**64 - 1 has no exact float, and GDAL takes a 64-bit
    band's nodata as an int only."""
    if dtype.kind == "f":
        return float("nan")
    limits = np.iinfo(dtype)
    return int(limits.min if dtype.kind == "i" else limits.max)


def apply_mask(
    raster: str,
    mask: str,
    output: str,
    classes: tuple[str, ...] = CLASSES,
    buffer_m: float = 0.0,
    feedback: Feedback | None = None,
    work_dir: str | None = None,
    bands: tuple[int, ...] = (),
    crop_to_mask: bool = False,
) -> ApplyResult:
    """Write ``output``: ``raster`` with the pixels of the chosen mask classes set to nodata.

    ``bands`` (1-based) keeps only those bands, in that order; ``crop_to_mask`` writes only
    the part of the raster the mask covers (a batch's mask of an area of interest).
    """
    with _closing_files_on_failure():
        return _apply(
            raster,
            mask,
            output,
            tuple(dict.fromkeys(classes)),
            buffer_m,
            feedback or Feedback(),
            work_dir,
            bands,
            crop_to_mask,
        )


@contextmanager
def _closing_files_on_failure():
    """Close the files a failed or cancelled run had open, at once.

    The exception's traceback keeps the frames of the steps alive, with their GDAL datasets
    open until Python gets round to collecting them: on Windows the partial output cannot be
    removed while open, and a dataset collected late (after QGIS has shut GDAL down) crashed
    the interpreter at exit."""
    try:
        yield
    except BaseException as err:
        traceback.clear_frames(err.__traceback__)
        raise


def _apply(
    raster: str,
    mask: str,
    output: str,
    classes: tuple[str, ...],
    buffer_m: float,
    feedback: Feedback,
    work_dir: str | None,
    bands: tuple[int, ...],
    crop_to_mask: bool,
) -> ApplyResult:
    grid, info = check_inputs(raster, mask, classes, buffer_m)
    require_geotiff_name(output)
    check_destination(output, [raster, mask])
    kind = mask_kind(mask)
    radius = buffer_pixels(buffer_m, info)
    with limited_block_cache(), tempfile.TemporaryDirectory(prefix="cloudmask-apply-", dir=work_dir) as tmp:
        if bands or crop_to_mask:
            raster = _subset(raster, grid, info if crop_to_mask else None, bands, os.path.join(tmp, "subset.vrt"))
            grid = raster_info(raster, "raster to mask")
        selection = os.path.join(tmp, "selection.tif")
        _write_selection(mask, info, kind, classes, radius, selection, Share(feedback, 0.0, 0.2))
        warped = not on_the_grid(info, grid)
        if warped:
            selection = _warp_selection(selection, grid, os.path.join(tmp, "selection_on_grid.vrt"))
        with atomic_outputs() as pending:
            applied = f"{os.path.basename(mask)}: {', '.join(classes)}; buffer {buffer_m:g} m"
            counts = _copy_masked(
                raster, grid, selection, "nodata" in classes, stage(pending, output), Share(feedback, 0.2, 1.0), applied
            )
        alpha = _has_alpha(raster)  # before the subset's VRT goes with the temporary folder
    masked, nodata, clashes = counts
    return ApplyResult(masked, grid.width * grid.height, nodata, alpha, kind.binary, radius, warped, clashes)


def _subset(raster: str, grid: RasterInfo, mask: RasterInfo | None, bands: tuple[int, ...], path: str) -> str:
    """A VRT of the chosen bands and, with ``mask``, of the raster's pixels the mask covers."""
    wrong = [b for b in bands if not 1 <= b <= grid.band_count]
    if wrong:
        raise MaskInputError(
            f"The raster '{raster}' has {grid.band_count} band(s): band(s) "
            f"{', '.join(map(str, wrong))} do not exist. Choose bands it has."
        )
    window = [0, 0, grid.width, grid.height]
    if mask is not None:
        x0, dx, _, y0, _, dy = grid.geotransform
        min_x, min_y, max_x, max_y = footprint(mask, grid.projection)
        left, top = max(0, math.floor((min_x - x0) / dx)), max(0, math.floor((max_y - y0) / dy))
        right = min(grid.width, math.ceil(round((max_x - x0) / dx, 6)))
        bottom = min(grid.height, math.ceil(round((min_y - y0) / dy, 6)))
        window = [left, top, right - left, bottom - top]
    done, detail = gdal_try(gdal.Translate, path, raster, format="VRT", srcWin=window, bandList=list(bands) or None)
    if done is None:
        raise RasterError(f"Could not read the bands of '{raster}': {detail}")
    done = None
    return path


# -- pass 1: the selection on the mask's grid


def _write_selection(
    mask: str, info: RasterInfo, kind: MaskKind, classes: tuple[str, ...], radius: int, path: str, feedback: Feedback
) -> None:
    """Write the selection: 1 where the mask's pixel is to be removed, 0 where it is kept.

    Rows go in windows with ``radius`` rows of context so that the buffer is the same as on the whole mask."""
    grown, drop_nodata = kind.values(classes), "nodata" in classes
    src = open_dataset(mask, "cloud mask")
    band = src.GetRasterBand(1)
    out = create_geotiff(path, info, 1, gdal.GDT_Byte, 0, options=["TILED=YES", "COMPRESS=DEFLATE", "ZLEVEL=1"])
    out.GetRasterBand(1).DeleteNoDataValue()
    for top in range(0, info.height, MASK_ROWS):
        if feedback.cancelled():
            raise Cancelled("Cancelled by the user.")
        bottom = min(info.height, top + MASK_ROWS)
        lo, hi = max(0, top - radius), min(info.height, bottom + radius)
        values, detail = gdal_try(band.ReadAsArray, 0, lo, info.width, hi - lo)
        if values is None:
            raise read_failed(f"the cloud mask '{mask}'", detail)
        _check_values(values, kind, mask)
        flagged = np.isin(values, grown) if grown else np.zeros(values.shape, bool)
        selected = merge.dilate_disk(flagged, radius)[top - lo : top - lo + bottom - top]
        if drop_nodata:
            selected |= values[top - lo : top - lo + bottom - top] == kind.nodata
        code, detail = gdal_try(out.GetRasterBand(1).WriteArray, selected.astype(np.uint8), 0, top)
        if code is None or code != gdal.CE_None:
            raise RasterError(f"Writing a temporary file failed: {detail}. Check the free disk space.")
        feedback.progress(bottom / info.height)
    out = None


def _check_values(values: np.ndarray, kind: MaskKind, mask: str) -> None:
    """A mask without class names is taken as ours: a value outside its classes says it is not."""
    strange = ~np.isin(values, kind.allowed())
    if strange.any():
        found = ", ".join(str(v) for v in np.unique(values[strange])[:5])
        raise MaskInputError(
            f"'{mask}' is not a cloud mask made by Improve cloud mask: it holds the value(s) {found}, where a "
            f"mask has only {', '.join(map(str, kind.allowed()))}. A product's scene classification (SCL) "
            "or cloud probability is not an improved mask: run Improve cloud mask on the scene first."
        )


def _warp_selection(selection: str, grid: RasterInfo, path: str) -> str:
    """The selection on the raster's grid (a VRT read window by window).

    ``max`` resampling masks a raster pixel when any selected mask pixel overlaps it; outside the mask, OUTSIDE."""
    done, detail = gdal_try(
        gdal.Warp,
        path,
        selection,
        format="VRT",
        outputBounds=grid.bounds,
        width=grid.width,
        height=grid.height,
        dstSRS=grid.projection,
        resampleAlg="max",
        dstNodata=OUTSIDE,
    )
    if done is None:
        raise RasterError(f"Could not bring the cloud mask onto the raster's grid: {detail}")
    done = None
    return path


# -- pass 2: the raster, copied with the selected pixels set to nodata


def _copy_masked(
    raster: str, grid: RasterInfo, selection: str, outside_masked: bool, path: str, feedback: Feedback, applied: str
) -> tuple[int, tuple, int]:
    src = open_dataset(raster, "raster to mask")
    dtype = np.dtype(gdal_array.GDALTypeCodeToNumericTypeCode(src.GetRasterBand(1).DataType))
    writes, declares = _fills(src, dtype)
    declared = [src.GetRasterBand(i + 1).GetNoDataValue() for i in range(grid.band_count)]
    out = _create_like(src, grid, path, declares, dtype)
    out.SetMetadataItem(APPLIED_KEY, applied)  # which mask made the holes, for whoever opens the file
    sel_ds = open_dataset(selection, "cloud mask")
    masked = clashes = 0
    windows = [(x, y) for y in range(0, grid.height, WINDOW) for x in range(0, grid.width, WINDOW)]
    for done, (x, y) in enumerate(windows, 1):
        if feedback.cancelled():
            raise Cancelled("Cancelled by the user.")
        w, h = min(WINDOW, grid.width - x), min(WINDOW, grid.height - y)
        data = _read(src, x, y, w, h, raster).reshape(grid.band_count, h, w)
        chosen = _read(sel_ds, x, y, w, h, "the cloud mask on the raster's grid")
        drop = (chosen == 1) | ((chosen == OUTSIDE) & outside_masked)
        for plane, fill, was_declared in zip(data, writes, declared):
            if fill is None:
                continue  # left to the alpha band
            if was_declared is None and not math.isnan(fill):
                clashes += int(np.count_nonzero(plane[~drop] == fill))
            plane[drop] = fill
        masked += int(np.count_nonzero(drop))
        code, detail = gdal_try(out.WriteArray, data, x, y)
        if code is None or code != gdal.CE_None:
            raise RasterError(
                f"Writing '{path}' failed: {detail or gdal.GetLastErrorMsg()}. Check that the disk "
                "has free space and the output folder is still there."
            )
        feedback.progress(done / len(windows))
    out.FlushCache()
    out = None
    return masked, tuple(declares), clashes


def _fills(src: gdal.Dataset, dtype: np.dtype) -> tuple[list, list]:
    """Per band: the value masked pixels get (None: unchanged) and the nodata value declared."""
    bands = [src.GetRasterBand(i + 1) for i in range(src.RasterCount)]
    alpha = [b.GetColorInterpretation() == gdal.GCI_AlphaBand for b in bands]
    writes: list[float | None] = []
    declares: list[float | None] = []
    for band, is_alpha in zip(bands, alpha):
        declared = band.GetNoDataValue()
        if is_alpha:
            writes.append(0)
        elif declared is None and any(alpha):
            writes.append(None)
        else:
            writes.append(declared if declared is not None else default_nodata(dtype))
        declares.append(None if is_alpha else declared if declared is not None or any(alpha) else writes[-1])
    return writes, declares


def _has_alpha(raster: str) -> bool:
    ds = open_dataset(raster, "raster to mask")
    return any(ds.GetRasterBand(i + 1).GetColorInterpretation() == gdal.GCI_AlphaBand for i in range(ds.RasterCount))


def _read(ds: gdal.Dataset, x: int, y: int, w: int, h: int, what: str) -> np.ndarray:
    data, detail = gdal_try(ds.ReadAsArray, x, y, w, h)
    if data is None:
        raise read_failed(f"'{what}'", detail)
    return data


def _create_like(src: gdal.Dataset, grid: RasterInfo, path: str, fills: list, dtype: np.dtype) -> gdal.Dataset:
    """A GeoTIFF of the raster's size, type and bands, carrying what describes them."""
    options = FLOAT_OPTIONS if dtype.kind == "f" else GTIFF_OPTIONS + ["PREDICTOR=2"]
    if grid.band_count > 1:
        options = options + ["INTERLEAVE=PIXEL"]
    out = create_geotiff(path, grid, grid.band_count, src.GetRasterBand(1).DataType, 0, options=options)
    out.SetMetadata(src.GetMetadata() or {})
    for i, fill in enumerate(fills, 1):
        _copy_band(src.GetRasterBand(i), out.GetRasterBand(i), fill)
    return out


def _copy_band(band: gdal.Band, target: gdal.Band, fill: float | None) -> None:
    if fill is None:
        target.DeleteNoDataValue()  # the alpha band says which pixels are empty
    elif target.DataType in WIDE_INTEGERS:
        target.SetNoDataValue(int(fill))  # GDAL refuses a float for a 64-bit band
    else:
        target.SetNoDataValue(fill)
    target.SetDescription(band.GetDescription() or "")
    target.SetMetadata(band.GetMetadata() or {})
    target.SetColorInterpretation(band.GetColorInterpretation())
    if band.GetColorTable() is not None:
        target.SetRasterColorTable(band.GetColorTable())
    if band.GetCategoryNames():
        target.SetCategoryNames(band.GetCategoryNames())
    for get, put in ((band.GetOffset, target.SetOffset), (band.GetScale, target.SetScale)):
        if get() is not None:
            put(get())
    if band.GetUnitType():
        target.SetUnitType(band.GetUnitType())


def describe(result: ApplyResult) -> str:
    """One line for the log: what was masked and how nodata is marked."""
    kinds = {
        "NaN" if math.isnan(v) else f"{v:g}" if isinstance(v, float) else str(v) for v in result.nodata if v is not None
    }
    marked = ", ".join(sorted(kinds) + (["alpha 0 (transparent)"] if result.alpha else []))
    text = (
        f"Masked {result.masked_pixels} of {result.total_pixels} pixels ({100 * result.masked_fraction:.1f} %); "
        f"nodata value: {marked}."
    )
    if result.radius_px:
        text += f" Buffer: {result.radius_px} mask pixel(s)."
    if result.warped:
        text += " The mask was brought onto the raster's grid (a pixel is masked if any masked mask pixel overlaps it)."
    return text


def warnings(result: ApplyResult) -> list[str]:
    """What a user must know about the output (empty when nothing)."""
    said = []
    if result.nodata_clashes:
        said.append(
            f"{result.nodata_clashes} kept pixel value(s) equal the nodata value chosen for bands that "
            "declared none, so they read as nodata too. Declare the raster's nodata value (layer "
            "Properties > Transparency, or gdal_edit -a_nodata) and run again to keep them."
        )
    if result.binary_mask:
        said.append("The mask is binary (cloud or shadow in one class): choosing cloud or shadow masks both.")
    return said
