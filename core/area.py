"""An area of interest: the fields a user cares about, and only the work they need.

Two things live here. Fractions within polygons (clear/cloud/shadow of the valid
pixels inside each field and inside all of them), counted on the mask's grid by
rasterising the polygons (a pixel counts when its centre is inside).

And the window of work. The models' tile grid is anchored to the whole raster,
so a run over a cut-out gives the same pixels as a whole-scene run only when
the cut-out holds, along each axis, every tile that touches the area (plus the
merge's context: dilation and small-patch removal) with the same start and the
same blending weights as in the whole-scene plan. ``work_window`` searches the
tile boundaries for the smallest such cut-out and checks that property against
``tiling.plan_axis`` itself, so it holds for every tiling scheme the cards use;
when nothing smaller qualifies it is the whole axis.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from osgeo import gdal, ogr, osr

from . import merge, provenance
from .errors import AreaError
from .raster import FLOAT_OPTIONS, GTIFF_OPTIONS, RasterError, open_dataset, raster_info
from .tiling import plan_axis


@dataclass(frozen=True)
class Area:
    """Polygons in one CRS; ``names`` label them in the per-field table."""

    wkts: tuple[str, ...]
    crs_wkt: str
    names: tuple[str, ...] = ()
    source: str = ""

    def __post_init__(self):
        if not self.wkts:
            raise AreaError(
                f"The area {self.source or ''} holds no polygon. Give a polygon layer with at "
                "least one feature (or selected feature).".replace("  ", " ")
            )
        if not self.names:
            object.__setattr__(self, "names", tuple(str(i + 1) for i in range(len(self.wkts))))

    def geometries(self, to_wkt: str) -> list[ogr.Geometry]:
        """The polygons in the CRS ``to_wkt`` (GIS axis order)."""
        src, dst = _srs(self.crs_wkt), _srs(to_wkt)
        out = []
        for wkt in self.wkts:
            geometry = ogr.CreateGeometryFromWkt(wkt)
            if geometry is None:
                raise AreaError(f"A polygon of the area {self.source} is not valid geometry.")
            if src is not None and dst is not None and not src.IsSame(dst):
                geometry.AssignSpatialReference(src)
                if geometry.TransformTo(dst) != 0:
                    raise AreaError(f"The area {self.source} cannot be brought into the raster's CRS.")
            out.append(geometry)
        return out

    def fingerprint(self) -> str:
        """Changes when the polygons or their CRS change (recorded with each mask to resume)."""
        import hashlib

        digest = hashlib.sha256(self.crs_wkt.encode())
        for wkt in self.wkts:
            digest.update(wkt.encode())
        return digest.hexdigest()[:16]


def _srs(wkt: str) -> osr.SpatialReference | None:
    if not wkt:
        return None
    srs = osr.SpatialReference()
    if srs.SetFromUserInput(wkt) != 0:
        raise AreaError(f"The area's coordinate reference system is not understood: {wkt[:60]}...")
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def read_area(path: str, layer: str | None = None) -> Area:
    """Polygons of a vector file (GeoPackage, Shapefile, GeoJSON ...).

    Its first layer unless ``layer`` is given. Each feature is labelled with its first text field, else its id."""
    gdal.ErrorReset()
    ds = ogr.Open(str(path))
    if ds is None:
        raise AreaError(
            f"Cannot open the area '{path}' as a vector file: {gdal.GetLastErrorMsg() or 'unknown format'}."
            " Give a polygon layer (GeoPackage, Shapefile, GeoJSON ...)."
        )
    lyr = ds.GetLayerByName(layer) if layer else ds.GetLayer(0)
    if lyr is None:
        raise AreaError(f"The area '{path}' has no layer {layer or ''}.".replace("  ", " "))
    definition = lyr.GetLayerDefn()
    label = next(
        (
            definition.GetFieldDefn(i).GetName()
            for i in range(definition.GetFieldCount())
            if definition.GetFieldDefn(i).GetType() == ogr.OFTString
        ),
        None,
    )
    wkts, names = [], []
    for feature in lyr:
        geometry = feature.GetGeometryRef()
        if geometry is None or geometry.IsEmpty():
            continue
        if ogr.GT_Flatten(geometry.GetGeometryType()) not in (ogr.wkbPolygon, ogr.wkbMultiPolygon):
            raise AreaError(
                f"The area '{path}' holds a {geometry.GetGeometryName().lower()}, not polygons. "
                "Give the fields as polygons."
            )
        wkts.append(geometry.ExportToWkt())
        names.append(
            str(feature.GetField(label)) if label and feature.GetField(label) is not None else str(feature.GetFID())
        )
    srs = lyr.GetSpatialRef()
    return Area(tuple(wkts), srs.ExportToWkt() if srs else "", tuple(names), str(path))


# -- where the area falls on a raster


@dataclass(frozen=True)
class Window:
    """Pixels ``[col, col + width) x [row, row + height)`` of a raster."""

    col: int
    row: int
    width: int
    height: int

    @property
    def cols(self) -> tuple[int, int]:
        return self.col, self.col + self.width

    @property
    def rows(self) -> tuple[int, int]:
        return self.row, self.row + self.height


def bounds_window(
    bounds: tuple[float, float, float, float], geotransform: tuple, width: int, height: int
) -> Window | None:
    """The raster's pixels whose area meets ``bounds`` (xmin, ymin, xmax, ymax in its CRS).

    None when the bounds miss the raster."""
    gt = geotransform
    cols = sorted(((bounds[0] - gt[0]) / gt[1], (bounds[2] - gt[0]) / gt[1]))
    rows = sorted(((bounds[3] - gt[3]) / gt[5], (bounds[1] - gt[3]) / gt[5]))
    c0, c1 = max(0, int(np.floor(cols[0] + 1e-9))), min(width, int(np.ceil(cols[1] - 1e-9)))
    r0, r1 = max(0, int(np.floor(rows[0] + 1e-9))), min(height, int(np.ceil(rows[1] - 1e-9)))
    if c0 >= c1 or r0 >= r1:
        return None
    return Window(c0, r0, c1 - c0, r1 - r0)


def area_window(area: Area, source: str) -> Window | None:
    """The bounding box of the area's polygons on the raster's pixels (None: no overlap)."""
    info = raster_info(source)
    envelopes = [g.GetEnvelope() for g in area.geometries(info.projection)]  # (minx, maxx, miny, maxy)
    bounds = (
        min(e[0] for e in envelopes),
        min(e[2] for e in envelopes),
        max(e[1] for e in envelopes),
        max(e[3] for e in envelopes),
    )
    window = bounds_window(bounds, info.geotransform, info.width, info.height)
    if window is None:
        return None
    burned = polygon_ids(area, source, window)
    return window if (burned > 0).any() else None


def _axis_ok(plans: list, lo: int, hi: int, a0: int, a1: int) -> bool:
    """True when a run over ``[lo, hi)`` gives pixels ``[a0, a1)`` exactly as the whole axis does."""
    for full, (scheme, tile, overlap) in plans:
        cut = plan_axis(hi - lo, scheme, tile, overlap)
        ours = {
            s: w
            for s, w in zip(full.starts, full.weights)
            if min(s + tile, full.size) > a0 and max(s, 0) < a1 and _touches(w, s, a0, a1)
        }
        theirs = {s + lo: w for s, w in zip(cut.starts, cut.weights) if _touches(w, s + lo, a0, a1)}
        if ours.keys() != theirs.keys():
            return False
        for start, weights in ours.items():
            # The tile must read the same pixels: inside the cut, or mirrored at the same raster edge.
            if (start < lo and lo > 0) or (start + tile > hi and hi < full.size):
                return False
            if not np.array_equal(weights, theirs[start]):
                return False
    return True


def _touches(weights: np.ndarray, start: int, a0: int, a1: int) -> bool:
    """A tile contributes to ``[a0, a1)`` when it has a non-zero weight there."""
    lo, hi = max(a0 - start, 0), min(a1 - start, len(weights))
    return lo < hi and bool((weights[lo:hi] > 0).any())


def _axis_cut(size: int, a0: int, a1: int, schemes: list[tuple[str, int, float]]) -> tuple[int, int]:
    plans = [(plan_axis(size, *s), s) for s in schemes]
    # A cut-out's first tile starts where its scheme starts tiles (e.g. a margin before its
    # first pixel): a cut-out may begin at a tile's start or that far after it.
    leads = {-plan_axis(4 * s[1], *s).starts[0] for s in schemes} | {0}
    lows = sorted(
        {0, *(max(0, s + lead) for full, _ in plans for s in full.starts for lead in leads if s + lead <= a0)},
        reverse=True,
    )
    highs = sorted({size, *(min(size, s + full.tile) for full, _ in plans for s in full.starts if s + full.tile >= a1)})
    for lo in lows:
        for hi in highs:
            if hi > lo and _axis_ok(plans, lo, hi, a0, a1):
                return lo, hi
    return 0, size


def work_window(
    target: Window,
    width: int,
    height: int,
    schemes: list[tuple[str, int, float]],
    halo: int,
    factors: tuple[int, int] = (1, 1),
) -> Window:
    """The smallest cut-out whose run gives the ``target`` pixels exactly as a whole-scene run.

    ``schemes`` are the (scheme, tile, overlap) of every model in the run; ``halo`` the
    merge's context (``MergeSettings.halo()``). At a processing resolution, ``factors`` are the
    raster's pixels per coarse pixel (columns, rows): the models' tiles lie on the coarse grid,
    and a cut-out that starts on a coarse pixel's edge lays the same coarse pixels as the whole
    raster (the grid is laid from the raster's corner)."""
    fx, fy = factors
    r0, r1 = max(0, target.row - halo), min(height, target.row + target.height + halo)
    c0, c1 = max(0, target.col - halo), min(width, target.col + target.width + halo)
    rows = _axis_cut(-(-height // fy), r0 // fy, -(-r1 // fy), schemes)
    cols = _axis_cut(-(-width // fx), c0 // fx, -(-c1 // fx), schemes)
    top, left = rows[0] * fy, cols[0] * fx
    return Window(left, top, min(width, cols[1] * fx) - left, min(height, rows[1] * fy) - top)


def coarse_factors(geotransform, resolution: float) -> tuple[int, int] | None:
    """The raster's pixels per coarse pixel of ``resolution`` metres (columns, rows).

    None when a coarse pixel is not a whole number of the raster's pixels (a 20 m raster at
    30 m): the coarse pixels then fall differently in every cut-out, and only a whole-scene run
    lays the grid the models ran on."""
    factors = tuple(resolution / abs(geotransform[k]) for k in (1, 5))
    if any(abs(f - round(f)) > 1e-6 or round(f) < 1 for f in factors):
        return None
    return round(factors[0]), round(factors[1])


# -- pixels inside the polygons


def polygon_ids(area: Area, source: str, window: Window | None = None) -> np.ndarray:
    """For each pixel of ``source`` (or of its ``window``), which polygon its centre lies in.

    1 + the index of that polygon, 0 outside all of them (a later polygon wins where they overlap)."""
    info = raster_info(source)
    window = window or Window(0, 0, info.width, info.height)
    gt = info.geotransform
    origin = (gt[0] + window.col * gt[1], gt[1], 0.0, gt[3] + window.row * gt[5], 0.0, gt[5])
    target = gdal.GetDriverByName("MEM").Create("", window.width, window.height, 1, gdal.GDT_UInt32)
    target.SetGeoTransform(origin)
    target.SetProjection(info.projection)
    vector = ogr.GetDriverByName("Memory").CreateDataSource("")
    layer = vector.CreateLayer("area", _srs(info.projection), ogr.wkbUnknown)
    layer.CreateField(ogr.FieldDefn("burn", ogr.OFTInteger))
    for index, geometry in enumerate(area.geometries(info.projection), start=1):
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetGeometry(geometry)
        feature.SetField("burn", index)
        layer.CreateFeature(feature)
    gdal.RasterizeLayer(target, [1], layer, options=["ATTRIBUTE=burn"])
    return target.GetRasterBand(1).ReadAsArray()


@dataclass
class AreaFractions:
    """Clear/cloud/shadow of the valid pixels inside the whole area and inside each polygon."""

    total: merge.Fractions = field(default_factory=merge.Fractions)
    per_polygon: list[merge.Fractions] = field(default_factory=list)


def area_fractions(mask_path: str, area: Area, output_mode: str = "categorical") -> AreaFractions:
    """Count the mask's categories inside the area (all polygons) and inside each polygon."""
    ds = open_dataset(mask_path, "mask")
    mask = ds.GetRasterBand(1).ReadAsArray()
    ids = polygon_ids(area, mask_path)
    result = AreaFractions(per_polygon=[merge.Fractions() for _ in area.wkts])
    result.total.add(mask[ids > 0], output_mode)
    for index, fractions in enumerate(result.per_polygon, start=1):
        fractions.add(mask[ids == index], output_mode)
    return result


def mask_fractions(mask_path: str, output_mode: str = "categorical") -> merge.Fractions:
    """Clear/cloud/shadow of a whole mask's valid pixels."""
    fractions = merge.Fractions()
    ds = open_dataset(mask_path, "mask")
    fractions.add(ds.GetRasterBand(1).ReadAsArray(), output_mode)
    ds = None
    return fractions


def source_figures(source_path: str, area: Area | None) -> dict[str, float]:
    """The provenance figures of a SOURCE raster, inside the area's polygons when given."""
    ds = open_dataset(source_path, "source")
    source = ds.GetRasterBand(1).ReadAsArray()
    counts = provenance.SourceCounts()
    counts.add(source if area is None else source[polygon_ids(area, source_path) > 0])
    return counts.figures()


def blank_outside(mask_path: str, area: Area) -> None:
    """Set pixels outside the polygons to nodata (255) in place."""
    ds = gdal.Open(mask_path, gdal.GA_Update)
    band = ds.GetRasterBand(1)
    mask = band.ReadAsArray()
    mask[polygon_ids(area, mask_path) == 0] = merge.NODATA
    band.WriteArray(mask)
    ds.FlushCache()
    ds = None


# -- a run limited to a window


@dataclass(frozen=True)
class Selection:
    """Where to work: polygons, a box, or both (their intersection).

    The box is xmin, ymin, xmax, ymax in ``bounds_crs``. ``blank``: nodata outside the polygons."""

    area: Area | None = None
    bounds: tuple[float, float, float, float] | None = None
    bounds_crs: str = ""
    blank: bool = False


def target_window(selection: Selection, info) -> Window:
    """The selection's pixels on the raster ``info`` (RasterInfo); an AreaError when it misses."""
    window = Window(0, 0, info.width, info.height)
    if selection.bounds is not None:
        bounds = _to_crs(selection.bounds, selection.bounds_crs, info.projection)
        found = bounds_window(bounds, info.geotransform, info.width, info.height)
        if found is None:
            raise AreaError(
                "The extent does not overlap the Sentinel-2 raster. Choose an extent inside the "
                "scene (any CRS: it is reprojected to the raster's)."
            )
        window = found
    if selection.area is not None:
        box = area_window(selection.area, info.source)
        found = _intersection(window, box) if box else None
        if found is None:
            raise AreaError(
                "The raster does not overlap the area"
                + (" within the extent" if selection.bounds else "")
                + ": nothing to do. Check that the area and the raster cover the same place."
            )
        window = found
    return window


def _to_crs(bounds, from_wkt: str, to_wkt: str) -> tuple[float, float, float, float]:
    src, dst = _srs(from_wkt), _srs(to_wkt)
    if src is None or dst is None or src.IsSame(dst):
        return bounds
    transform = osr.CoordinateTransformation(src, dst)
    xmin, ymin, xmax, ymax = transform.TransformBounds(*bounds, 21)
    return xmin, ymin, xmax, ymax


def _intersection(a: Window, b: Window) -> Window | None:
    c0, c1 = max(a.col, b.col), min(a.col + a.width, b.col + b.width)
    r0, r1 = max(a.row, b.row), min(a.row + a.height, b.row + b.height)
    return Window(c0, r0, c1 - c0, r1 - r0) if c0 < c1 and r0 < r1 else None


def cut(source: str, window: Window, out_path: str) -> str:
    """A VRT of ``window`` of ``source`` (keeps band names, nodata and metadata)."""
    done = gdal.Translate(out_path, source, format="VRT", srcWin=[window.col, window.row, window.width, window.height])
    if done is None:
        raise RasterError(f"Could not cut {source} to the area: {gdal.GetLastErrorMsg()}")
    done = None
    return out_path


@dataclass(frozen=True)
class AreaCounts:
    """What an area-limited run counts on its outputs.

    The mask's fractions and the SOURCE figures (None without it) within the box or the
    polygons, and a note on the window."""

    fractions: merge.Fractions
    figures: dict[str, float] | None
    note: str


@dataclass(frozen=True)
class AreaRun:
    """A whole-scene run plan pointed at the cut-out of the raster that a selection needs.

    The plan is made for the whole raster (every check and choice made once, models and
    thresholds included); ``plan`` is that plan over a cut-out chosen by ``work_window`` for
    its models, with its outputs in a temporary folder (``staged``). The pipeline runs it,
    then :meth:`finish` cuts the outputs to the selection's bounding box: the same pixels
    there as a whole-scene run, for a fraction of the work."""

    plan: Any  # plan.RunPlan
    selection: Selection
    target: Window  # the selection's pixels on the raster
    work: Window  # the cut-out the models run on
    finals: dict[str, str]  # output name -> the path the caller asked for
    staged: dict[str, str]  # output name -> where ``plan`` writes it

    @classmethod
    def of(cls, whole, selection: Selection, folder: str) -> AreaRun:
        """``whole`` (a RunPlan) over the part of its raster ``selection`` needs; files in ``folder``."""
        info = whole.probability.raster
        target = target_window(selection, info)
        resolution = whole.probability.resolution
        factors = coarse_factors(info.geotransform, resolution) if resolution else (1, 1)
        if factors is None:
            work = Window(0, 0, info.width, info.height)
        else:
            schemes = [(m.card.scheme, m.card.tile, m.card.overlap) for m in whole.probability.models]
            work = work_window(target, info.width, info.height, schemes, whole.merge.settings.halo(), factors)
        finals = {"mask": whole.mask, **{k: v for k, v in whole.probability.outputs.as_dict().items() if v}}
        if whole.source:
            finals["source"] = whole.source
        staged = {k: os.path.join(folder, f"{k}.tif") for k in finals}
        grid = raster_info(cut(info.source, work, os.path.join(folder, "work.vrt")), "Sentinel-2 raster")
        outputs = replace(whole.probability.outputs, **{k: staged.get(k) for k in whole.probability.outputs.as_dict()})
        part = replace(
            whole,
            probability=replace(whole.probability, raster=grid, outputs=outputs),
            merge=replace(whole.merge, grid=grid),
            mask=staged["mask"],
            source=staged.get("source"),
        )
        return cls(part, selection, target, work, finals, staged)

    def finish(self, written: dict[str, str]) -> AreaCounts:
        """Cut each output of the run to the selection's box into ``written`` (name -> path).

        Blank outside the polygons when asked, and count within the box or the polygons."""
        inner = Window(
            self.target.col - self.work.col, self.target.row - self.work.row, self.target.width, self.target.height
        )
        for key, path in written.items():
            _copy_window(self.staged[key], inner, path)
        area = self.selection.area
        if self.selection.blank and area is not None:
            blank_outside(written["mask"], area)
            if "source" in written:  # its nodata is the mask's: 255
                blank_outside(written["source"], area)
        mode = self.plan.merge.settings.output_mode
        fractions = (
            area_fractions(written["mask"], area, mode).total
            if area is not None
            else mask_fractions(written["mask"], mode)
        )
        figures = source_figures(written["source"], area) if "source" in written else None
        note = (
            f"Area: {self.target.width} x {self.target.height} pixels from column {self.target.col}, row "
            f"{self.target.row}; the models ran on {self.work.width} x {self.work.height} pixels."
        )
        return AreaCounts(fractions, figures, note)


def _copy_window(path: str, window: Window, out_path: str) -> None:
    ds = open_dataset(path)
    floating = ds.GetRasterBand(1).DataType == gdal.GDT_Float32
    done = gdal.Translate(
        out_path,
        ds,
        format="GTiff",
        srcWin=[window.col, window.row, window.width, window.height],
        creationOptions=FLOAT_OPTIONS if floating else GTIFF_OPTIONS,
    )
    if done is None:
        raise RasterError(f"Could not write '{out_path}': {gdal.GetLastErrorMsg()}")
    done = None
