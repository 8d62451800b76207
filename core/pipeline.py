"""A whole run: probabilities from the Sentinel-2 raster in one pass, then the merge.

This is what the Processing algorithms call; it knows nothing of QGIS.
Every output is written to a temporary file beside its destination and
renamed only when the whole run succeeded.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field, replace

import numpy as np
from osgeo import gdal, osr

from . import bands as band_names
from . import deps, models
from . import merge as mg
from .cards import ModelCard
from .engine import Cancelled, Engine, EngineSettings, Feedback, Job
from .inference import ModelError, fallback_note, load_model
from .raster import (
    FLOAT_OPTIONS,
    PROBABILITY_NODATA,
    RasterError,
    RasterInfo,
    RowSource,
    atomic_outputs,
    check_destination,
    create_geotiff,
    limited_block_cache,
    open_dataset,
    partial_path,
    raster_info,
    require_georeference,
    set_categories,
)

LEVEL_KEYS = ("PROCESSING_LEVEL", "PRODUCT_TYPE")
OFFSET_KEYS = ("BOA_ADD_OFFSET", "RADIO_ADD_OFFSET")


@dataclass
class ProbabilityRequest:
    s2_raster: str
    cloud_models: list[str] = field(default_factory=list)
    shadow_model: str | None = None
    bands: str = ""
    resolution: float = 0.0
    provider: str = "auto"
    in_memory: bool = False
    window_rows: int = EngineSettings.window_rows
    batch_size: int = 0  # tiles per model call; 0: what suits the device (inference.LoadedModel.batch_size)
    stripe_cols: int = EngineSettings.stripe_cols
    threads: int = 0  # onnxruntime intra-op threads; 0: one per CPU


@dataclass
class ProbabilityOutputs:
    cloud: str | None = None
    shadow: str | None = None
    uncertainty: str | None = None

    def paths(self) -> tuple[str | None, str | None, str | None]:
        return self.cloud, self.shadow, self.uncertainty

    def in_folder(self, folder: str) -> ProbabilityOutputs:
        """The same set of outputs, as files in ``folder``."""
        names = ("cloud.tif", "shadow.tif", "uncertainty.tif")
        return ProbabilityOutputs(*(os.path.join(folder, n) if p else None for n, p in zip(names, self.paths())))


@dataclass
class RunReport:
    fractions: dict[str, float] = field(default_factory=dict)
    valid_pixels: int = 0
    notes: list[str] = field(default_factory=list)
    cloud_models: list[str] = field(default_factory=list)
    shadow_model: str | None = None
    # The cards the run used, by id: a model given as a path has no installed id to look up again.
    cards: dict[str, ModelCard] = field(default_factory=dict)


def processing_level(info: RasterInfo) -> str:
    for key in LEVEL_KEYS:
        value = str(info.metadata.get(key, "")).upper()
        if "1C" in value:
            return "L1C"
        if "2A" in value:
            return "L2A"
    return "L2A"


def radiometric_offset(info: RasterInfo) -> float:
    for key in OFFSET_KEYS:
        if key in info.metadata:
            try:
                return float(info.metadata[key])
            except ValueError:
                pass
    return 0.0


def _read_inputs(request: ProbabilityRequest) -> tuple[RasterInfo, list[str]]:
    info = raster_info(request.s2_raster, "Sentinel-2 raster")
    require_georeference(info, "Sentinel-2 raster")
    require_measurements(info)
    names = band_names.detect_bands(info.descriptions, request.bands)
    return info, names


def require_measurements(info: RasterInfo) -> None:
    """Refuse 8-bit rasters: Sentinel-2 values (0..10000 and more) do not fit in a byte,
    so an 8-bit raster is a picture (an RGB rendering, a quicklook) and any mask from it
    would be silently wrong."""
    if info.data_type == "Byte":
        raise RasterError(
            f"The Sentinel-2 raster '{info.source}' is 8-bit ({info.band_count} bands of Byte): that is a "
            "picture such as an RGB rendering, not Sentinel-2 measurements, and the models would give a "
            "wrong mask. Use the Sentinel-2 bands themselves: digital numbers (uint16, as in the .SAFE "
            "product).")
    if info.data_type.startswith("Float") and _largest_value(info.source) <= REFLECTANCE_CEILING:
        raise RasterError(
            f"The Sentinel-2 raster '{info.source}' holds values of at most {REFLECTANCE_CEILING:g}: that "
            "is reflectance (0..1), but the models read Sentinel-2 digital numbers (reflectance x 10000), "
            "so the mask would be wrong. Multiply the bands by 10000 (e.g. Raster Calculator or "
            "gdal_calc.py) and run again.")


# Reflectance rarely exceeds 1 (bright cloud, snow: up to about 1.5); digital numbers
# of any real scene go far beyond this.
REFLECTANCE_CEILING = 3.0


def _largest_value(source: str) -> float:
    """The first band's largest value, from GDAL's quick sample (inf when unknown:
    an all-nodata raster is valid and gets an all-nodata mask)."""
    ds = open_dataset(source)  # kept referenced while its band is used
    gdal.PushErrorHandler("CPLQuietErrorHandler")  # "no valid pixels" is an answer here, not an error
    try:
        low_high = ds.GetRasterBand(1).ComputeRasterMinMax(True)
    except RuntimeError:
        low_high = None
    finally:
        gdal.PopErrorHandler()
    if not low_high or not np.isfinite(low_high[1]):
        return float("inf")
    return float(low_high[1])


def _load(card: ModelCard, path, request: ProbabilityRequest, sharing: int = 1):
    """Load a network; when it needs a newer onnxruntime, say exactly how to get one."""
    try:
        return load_model(card, path, request.provider, request.threads, sharing)
    except ModelError as err:
        if "newer onnxruntime" not in str(err):
            raise
        # onnxruntime's own text here is a C++ signature: say it in words, with the command.
        raise ModelError(
            f"Model '{card.id}' ({path}) needs a newer onnxruntime than {deps.runtime_status().version}: "
            "it uses an operator set (opset) this one does not know. Upgrade onnxruntime for QGIS's "
            f"Python with: {' '.join(deps.install_command())}") from err


def _jobs(request: ProbabilityRequest, names: list[str], report: RunReport):
    """Load each distinct network once; a model that is both cloud and shadow runs once."""
    wanted: dict[str, list[bool]] = {}
    for ref in request.cloud_models:
        wanted.setdefault(ref, [False, False])[0] = True
    if request.shadow_model:
        wanted.setdefault(request.shadow_model, [False, False])[1] = True
    loaded = []
    union: list[str] = []
    for ref, (cloud, shadow) in wanted.items():
        card, path = models.resolve(ref)
        if cloud and not card.has_cloud:
            raise models.ModelNotFound(f"Model '{card.id}' gives no cloud probability; choose a cloud model.")
        if shadow and not card.has_shadow:
            raise models.ModelNotFound(f"Model '{card.id}' gives no shadow probability; choose a shadow model.")
        band_names.band_indices(names, card.bands, card.id)
        for b in card.bands:
            if b not in union:
                union.append(b)
        report.cards[card.id] = card
        loaded.append((_load(card, path, request, len(wanted)), cloud, shadow))
    raster_bands = [names.index(b) + 1 for b in union]
    jobs = [Job(m, [union.index(b) for b in m.card.bands], c, s) for m, c, s in loaded]
    report.cloud_models = [m.card.id for m, c, _ in loaded if c]
    report.shadow_model = next((m.card.id for m, _, s in loaded if s), None)
    report.notes.extend(dict.fromkeys(m.note for m, _, _ in loaded if m.note))  # e.g. CUDA fell back to CPU
    return jobs, raster_bands


class _ProbabilityWriter:
    """Combines members (mean and spread for ensembles) and writes finished rows."""

    def __init__(self, info: RasterInfo, jobs: list[Job], paths: ProbabilityOutputs):
        self.cloud_keys = [f"{j.key}:cloud" for j in jobs if j.cloud]
        self.shadow_key = next((f"{j.key}:shadow" for j in jobs if j.shadow), None)
        self.targets = {}
        for name, path in (("cloud", paths.cloud), ("shadow", paths.shadow),
                           ("uncertainty", paths.uncertainty)):
            if path:
                self.targets[name] = create_geotiff(path, info, 1, gdal.GDT_Float32, PROBABILITY_NODATA)

    def __call__(self, row: int, col: int, strips: dict[str, np.ndarray]) -> None:
        values = {}
        if self.cloud_keys:
            members = np.stack([strips[k] for k in self.cloud_keys])
            values["cloud"] = members.mean(axis=0)
            values["uncertainty"] = members.std(axis=0)
        if self.shadow_key:
            values["shadow"] = strips[self.shadow_key]
        for name, ds in self.targets.items():
            data = np.where(np.isfinite(values[name]), values[name], PROBABILITY_NODATA)
            ds.GetRasterBand(1).WriteArray(data.astype(np.float32), col, row)

    def close(self) -> None:
        for ds in self.targets.values():
            ds.FlushCache()
        self.targets = {}


@limited_block_cache()  # also while warping coarse results back onto the 10 m grid
def compute_probabilities(request: ProbabilityRequest, outputs: ProbabilityOutputs,
                          feedback: Feedback | None = None) -> RunReport:
    """Write the requested probability rasters (final paths; callers make them atomic)."""
    report = RunReport()
    info, names = _read_inputs(request)
    level = processing_level(info)
    if not request.cloud_models and outputs.cloud:
        request.cloud_models = models.default_cloud_models(level, ensemble=False)
    jobs, raster_bands = _jobs(request, names, report)
    source_path = request.s2_raster
    coarse = request.resolution and request.resolution > info.pixel_size * 1.001
    with tempfile.TemporaryDirectory(prefix="cloudmask-") as tmp:
        run_info, run_outputs = info, outputs
        if coarse:
            # The models run on an averaged VRT; their results are warped back below.
            source_path = os.path.join(tmp, "coarse.vrt")
            gdal.Warp(source_path, request.s2_raster, format="VRT", xRes=request.resolution,
                      yRes=request.resolution, resampleAlg="average")
            run_info = raster_info(source_path)
            run_outputs = outputs.in_folder(tmp)
        source = RowSource(source_path, raster_bands, request.window_rows, request.in_memory)
        nodata = [info.nodata[b - 1] for b in raster_bands]
        writer = _ProbabilityWriter(run_info, jobs, run_outputs)
        try:
            settings = EngineSettings(window_rows=request.window_rows, batch_size=_batch_size(request, jobs),
                                      in_memory=request.in_memory, stripe_cols=_stripe_cols(request, jobs))
            Engine(source, jobs, nodata, radiometric_offset(info), settings, feedback).run(writer)
        finally:
            writer.close()
            source.close()
        report.notes.extend(dict.fromkeys(n for n in (fallback_note(j.model) for j in jobs) if n))
        if coarse:
            for coarse_path, final in zip(run_outputs.paths(), outputs.paths()):
                if final:
                    _to_grid(coarse_path, info, final, "bilinear")
    return report


def _batch_size(request: ProbabilityRequest, jobs: list[Job]) -> int:
    """The request's batch size, else the smallest that suits the devices the models run on."""
    return request.batch_size or min((j.model.batch_size for j in jobs), default=EngineSettings.batch_size)


def _stripe_cols(request: ProbabilityRequest, jobs: list[Job]) -> int:
    """On the GPU, stripes wide enough that a tile row fills a batch: the engine batches within
    a row of a stripe (a 4096 px stripe holds about 20 ukis tiles, a full tile's width 55)."""
    gpu_cols = [j.model.batch_size * j.model.card.tile for j in jobs if j.model.provider == "cuda"]
    return max([request.stripe_cols, *gpu_cols])


def _to_grid(path: str, info: RasterInfo, out_path: str, resample: str) -> None:
    """Bring a probability raster onto the Sentinel-2 raster's grid."""
    gt = info.geotransform
    bounds = (gt[0], gt[3] + gt[5] * info.height, gt[0] + gt[1] * info.width, gt[3])
    fmt = "VRT" if out_path.endswith(".vrt") else "GTiff"
    options = [] if fmt == "VRT" else FLOAT_OPTIONS
    done = gdal.Warp(out_path, path, format=fmt, outputBounds=bounds, width=info.width,
                     height=info.height, dstSRS=info.projection or None, resampleAlg=resample,
                     creationOptions=options, multithread=True)
    if done is None:
        raise RasterError(f"Could not resample {path} onto the Sentinel-2 grid: {gdal.GetLastErrorMsg()}")
    done = None


def _footprint(info: RasterInfo, to_wkt: str) -> tuple[float, float, float, float]:
    gt = info.geotransform
    xs = [gt[0], gt[0] + gt[1] * info.width]
    ys = [gt[3], gt[3] + gt[5] * info.height]
    corners = [(x, y) for x in xs for y in ys]
    if info.projection and to_wkt:
        src, dst = osr.SpatialReference(), osr.SpatialReference()
        src.ImportFromWkt(info.projection)
        dst.ImportFromWkt(to_wkt)
        for sr in (src, dst):
            sr.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        transform = osr.CoordinateTransformation(src, dst)
        corners = [transform.TransformPoint(x, y)[:2] for x, y in corners]
    px, py = zip(*corners)
    return min(px), min(py), max(px), max(py)


def product_mask_on_grid(product: str, grid: RasterInfo, folder: str) -> tuple[str, float]:
    """The product mask resampled (nearest) onto the grid, as a VRT; and its nodata."""
    info = raster_info(product, "product mask")
    require_georeference(info, "product mask")
    a = _footprint(info, grid.projection)
    b = _footprint(grid, grid.projection)
    if a[0] >= b[2] or a[2] <= b[0] or a[1] >= b[3] or a[3] <= b[1]:
        raise RasterError(f"The product mask '{product}' does not overlap the Sentinel-2 raster. "
                          "Use the product mask of the same scene (or leave it empty).")
    nodata = info.nodata[0]
    fill = nodata if nodata is not None else (65535 if info.data_type not in ("Byte",) else 254)
    path = os.path.join(folder, "product_on_grid.vrt")
    if info.band_count > 1:  # GDAL 3.6's Warp has no band selection: take band 1 first
        first = os.path.join(folder, "product_band1.vrt")
        gdal.Translate(first, product, format="VRT", bandList=[1])
        product = first
    gt = grid.geotransform
    bounds = (gt[0], gt[3] + gt[5] * grid.height, gt[0] + gt[1] * grid.width, gt[3])
    done = gdal.Warp(path, product, format="VRT", outputBounds=bounds, width=grid.width,
                     height=grid.height, dstSRS=grid.projection, resampleAlg="near",
                     srcNodata=nodata, dstNodata=fill)
    if done is None:
        raise RasterError(f"Could not resample the product mask: {gdal.GetLastErrorMsg()}")
    done = None
    return path, fill


@dataclass
class MergeRequest:
    cloud_probability: str | None
    shadow_probability: str | None
    product_mask: str | None
    settings: mg.MergeSettings
    window_rows: int = 128  # full-width float windows: the merge's share of memory


@limited_block_cache()  # bounded memory on a full tile: see core/raster.py
def merge_to_mask(request: MergeRequest, mask_path: str, feedback: Feedback | None = None) -> mg.Fractions:
    """Stream the merge in row windows with the halo the morphology needs."""
    feedback = feedback or Feedback()
    request.settings.validate()
    grid_path = request.cloud_probability or request.shadow_probability
    if not grid_path:
        raise RasterError("The merge needs a cloud or a shadow probability raster.")
    grid = raster_info(grid_path, "probability raster")
    for other in (request.cloud_probability, request.shadow_probability):
        if other:
            o = raster_info(other, "probability raster")
            if (o.width, o.height) != (grid.width, grid.height) or o.geotransform != grid.geotransform:
                raise RasterError("The cloud and shadow probability rasters are not on the same grid. "
                                  "Compute both from the same Sentinel-2 raster.")
    fractions = mg.Fractions()
    with tempfile.TemporaryDirectory(prefix="cloudmask-") as tmp:
        product = None
        if request.product_mask:
            product, product_nodata = product_mask_on_grid(request.product_mask, grid, tmp)
        readers = {k: open_dataset(p) if p else None for k, p in (
            ("cloud", request.cloud_probability), ("shadow", request.shadow_probability), ("product", product))}
        out = create_geotiff(mask_path, grid, 1, gdal.GDT_Byte, mg.NODATA)
        # Before any block is written: on a wide raster GDAL has flushed blocks by the end,
        # and a GeoTIFF's palette tags can no longer be set then.
        names = mg.CATEGORY_NAMES if request.settings.output_mode == "categorical" else mg.BINARY_CATEGORY_NAMES
        colours = mg.CATEGORY_COLOURS if request.settings.output_mode == "categorical" else mg.BINARY_CATEGORY_COLOURS
        set_categories(out, names, colours)
        halo = request.settings.halo()
        step = max(1, request.window_rows)
        for lo in range(0, grid.height, step):
            hi = min(grid.height, lo + step)
            a, b = max(0, lo - halo), min(grid.height, hi + halo)
            block = {k: (ds.GetRasterBand(1).ReadAsArray(0, a, grid.width, b - a) if ds else None)
                     for k, ds in readers.items()}
            probs = {}
            for k in ("cloud", "shadow"):
                v = block[k]
                probs[k] = None if v is None else np.where(v == PROBABILITY_NODATA, np.nan, v).astype(np.float32)
            first = probs["cloud"] if probs["cloud"] is not None else probs["shadow"]
            valid = np.isfinite(first)
            decoded = None
            if block["product"] is not None:
                decoded = mg.decode_product_mask(block["product"], request.settings.product_kind,
                                                 product_nodata, request.settings.product_probability_threshold)
            core = (slice(lo - a, hi - a), slice(0, grid.width))
            edges = (a == 0, b == grid.height, True, True)
            mask = mg.merge_block(probs["cloud"], probs["shadow"], valid, decoded, request.settings, core, edges)
            out.GetRasterBand(1).WriteArray(mask, 0, lo)
            fractions.add(mask, request.settings.output_mode)
            feedback.progress(hi / grid.height)
            if feedback.cancelled():
                raise Cancelled("Cancelled by the user.")
        out.FlushCache()
        out = None
        readers = None
    return fractions


class _Stage(Feedback):
    """Maps a stage's 0..1 progress into a slice of the whole run."""

    def __init__(self, parent: Feedback, start: float, end: float):
        self.parent, self.start, self.end = parent, start, end

    def progress(self, fraction: float) -> None:
        self.parent.progress(self.start + (self.end - self.start) * fraction)

    def cancelled(self) -> bool:
        return self.parent.cancelled()


@dataclass
class ImproveRequest:
    probability: ProbabilityRequest
    product_mask: str | None
    settings: mg.MergeSettings
    cloud_threshold: float | None = None
    shadow_threshold: float | None = None
    mask: str = ""
    outputs: ProbabilityOutputs = field(default_factory=ProbabilityOutputs)
    ensemble: bool = False


def _thresholds(request: ImproveRequest, report: RunReport) -> mg.MergeSettings:
    """Unset thresholds take the model cards' recommended values."""
    cloud, shadow = request.cloud_threshold, request.shadow_threshold
    if cloud is None:
        values = [report.cards[m].cloud_threshold for m in report.cloud_models]
        values = [v for v in values if v is not None]
        cloud = float(np.mean(values)) if values else request.settings.cloud_threshold
    if shadow is None and report.shadow_model:
        shadow = report.cards[report.shadow_model].shadow_threshold
    if shadow is None:
        shadow = request.settings.shadow_threshold
    report.notes.append(f"Thresholds: cloud {cloud:g}, shadow {shadow:g}.")
    return replace(request.settings, cloud_threshold=float(cloud), shadow_threshold=float(shadow))


def _require_distinct(outputs: list[str]) -> None:
    """Two outputs on one path: the later rename would silently replace the earlier output."""
    seen: dict[str, str] = {}
    for path in outputs:
        key = os.path.normcase(os.path.abspath(path))
        if key in seen:
            raise RasterError(f"Two outputs are the same file '{path}'. Give each output its own path.")
        seen[key] = path


def improve(request: ImproveRequest, feedback: Feedback | None = None) -> RunReport:
    """The seed workflow: probabilities in one pass, thresholds, merge with the product mask."""
    feedback = feedback or Feedback()
    request.settings.validate()
    for value, name in ((request.cloud_threshold, "cloud"), (request.shadow_threshold, "shadow")):
        if value is not None and not 0 <= value <= 1:
            raise ValueError(f"The {name} threshold {value} is outside 0..1. Give a probability "
                             "between 0 and 1, or leave it empty for the model's recommended value.")
    prob = request.probability
    inputs = [prob.s2_raster, request.product_mask or ""]
    finals = [request.mask] + [p for p in request.outputs.paths() if p]
    for path in finals:
        check_destination(path, inputs)
    _require_distinct(finals)
    info, _ = _read_inputs(prob)
    level = processing_level(info)
    if not prob.cloud_models:
        prob.cloud_models = models.default_cloud_models(level, ensemble=request.ensemble)
    if prob.shadow_model is None:
        prob.shadow_model = models.default_shadow_model(level, prob.cloud_models)
    with atomic_outputs() as pending, tempfile.TemporaryDirectory(prefix="cloudmask-") as tmp:
        def target(final: str | None, name: str) -> str:
            if final:
                pending.append((partial_path(final), final))
                return pending[-1][0]
            return os.path.join(tmp, f"{name}.tif")
        outputs = ProbabilityOutputs(
            cloud=target(request.outputs.cloud, "cloud"),
            shadow=target(request.outputs.shadow, "shadow") if prob.shadow_model else None,
            uncertainty=target(request.outputs.uncertainty, "unc") if request.outputs.uncertainty else None)
        report = compute_probabilities(prob, outputs, _Stage(feedback, 0.0, 0.9))
        settings = _thresholds(request, report)
        mask_tmp = target(request.mask, "mask")
        merge = MergeRequest(outputs.cloud, outputs.shadow, request.product_mask, settings)
        fractions = merge_to_mask(merge, mask_tmp, _Stage(feedback, 0.9, 1.0))
    report.fractions = fractions.as_dict()
    report.valid_pixels = fractions.valid
    return report


def _staged(finals: ProbabilityOutputs, pending: list) -> ProbabilityOutputs:
    staged = []
    for final in finals.paths():
        if final:
            pending.append((partial_path(final), final))
            staged.append(pending[-1][0])
        else:
            staged.append(None)
    return ProbabilityOutputs(*staged)


def probabilities(request: ProbabilityRequest, outputs: ProbabilityOutputs,
                  feedback: Feedback | None = None) -> RunReport:
    """Cloud and/or shadow probability rasters, written atomically."""
    for path in outputs.paths():
        if path:
            check_destination(path, [request.s2_raster])
    with atomic_outputs() as pending:
        return compute_probabilities(request, _staged(outputs, pending), feedback)


def merge(request: MergeRequest, mask: str, feedback: Feedback | None = None) -> mg.Fractions:
    """The merge op on its own, written atomically."""
    check_destination(mask, [request.cloud_probability or "", request.shadow_probability or "",
                             request.product_mask or ""])
    with atomic_outputs() as pending:
        pending.append((partial_path(mask), mask))
        return merge_to_mask(request, pending[-1][0], feedback)
