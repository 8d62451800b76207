"""Many products in one go: one mask per product, one summary row per product.

``run_product`` does one product start to finish and never raises for a bad
product: its row says what went wrong, so one corrupt zip never stops a
season. It is the unit of work everywhere: the QGIS algorithm calls it in a
loop (``run_sequential``), the command line hands it to Dask workers, one task per
product (``run_on_cluster``).

Resuming: beside each mask a small JSON record (``<mask>.json``) holds the
input's identity (path, size, modification time), every parameter, the models
with their sha256, the area's fingerprint and the plugin version, plus the
summary row. A product whose record matches is not redone; its row is read
back. The mask is renamed into place (atomically) before its record is
written, so a record always describes a complete mask.

With ``masked`` on, each product's imagery with its mask applied (Apply cloud
mask: cloud, shadow and nodata set to nodata) is written beside its mask as
``<mask name>_masked.tif``; the record says which bands it holds, so a rerun
keeps it, and a folder of outputs given as input is not taken for products.

With ``source`` on, each product's SOURCE raster (which source flagged each
pixel: ``provenance.py``) is written beside its mask as ``<mask name>_source.tif``
by the same run that makes the mask, and its figures go into the summary row.
Turned on for products already done, it is made by a run whose mask is thrown
away: the kept mask is not rewritten (it would be the same, byte for byte).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path

from osgeo import gdal

from .. import apply_mask, pipeline, provenance
from .. import area as areas
from ..bands import BandError, detect_bands, parse_band_list
from ..errors import CloudMaskError
from ..modelstore.cards import sha256_of
from ..progress import Cancelled, Feedback, Share
from ..raster import raster_info
from ..sentinel2 import product
from ..staging import IN_FOLDER, OutputError, check_destination, check_replaceable, discard, remove, swap
from . import dask_cluster, discovery
from . import layers as season_layers
from .summary import FieldRow, Row

RECORD_FORMAT = 1
MASKED_SUFFIX = "_masked"  # <mask name>_masked.tif: the product's imagery with its mask applied
SOURCE_SUFFIX = "_source"  # <mask name>_source.tif: which source flagged each pixel of the mask
SUFFIXES = (MASKED_SUFFIX, SOURCE_SUFFIX)  # files beside a mask that are no products
METADATA_TXT = Path(__file__).resolve().parents[2] / "metadata.txt"


def plugin_version() -> str:
    try:
        text = METADATA_TXT.read_text(encoding="utf-8")
    except OSError:
        return "unknown"
    match = re.search(r"^version\s*=\s*(\S+)", text, re.MULTILINE)
    return match.group(1) if match else "unknown"


def template(**probability) -> pipeline.ImproveRequest:
    """An Improve cloud mask request for every product, with these fields of its probability request.

    The fields are models, bands, resolution, threads ...; its raster is each product's own."""
    return pipeline.ImproveRequest(pipeline.ProbabilityRequest(s2_raster="", **probability))


@dataclass(frozen=True)
class BatchOptions:
    """What Improve cloud mask is asked for every product, and the batch's own options.

    The request is a template: its models, thresholds, merge settings and advanced options
    hold for every product; its raster, product mask and outputs are each product's own
    (``_request``). Empty models: the defaults of each product's level.
    """

    request: pipeline.ImproveRequest = field(default_factory=template)
    blank_outside: bool = False  # with an area: nodata outside its polygons
    masked: bool = False  # also write each product's imagery with its mask applied
    masked_bands: str = ""  # of that imagery: these Sentinel-2 bands (comma-separated); empty: all
    source: bool = False  # also write each product's SOURCE raster (which source flagged each pixel)

    def recorded(self) -> dict:
        """What decides the mask's pixels (threads and the execution provider do not).

        Under the names of a product's record, which stay the same so that a rerun keeps the masks it made."""
        request, probability, settings = self.request, self.request.probability, self.request.settings
        return {
            "cloud_models": list(probability.cloud_models),
            "shadow_model": probability.shadow_model or "",
            "ensemble": request.ensemble or probability.ensemble,
            "cloud_threshold": request.cloud_threshold,
            "shadow_threshold": request.shadow_threshold,
            "bands": probability.bands,
            "resolution": probability.resolution,
            "product_kind": settings.product_kind,
            "dilation": settings.dilation,
            "min_area": settings.min_area,
            "output_mode": settings.output_mode,
            "blank_outside": self.blank_outside,
        }


@dataclass(frozen=True)
class Item:
    """One input and the name (without extension) its mask gets."""

    source: str
    name: str


def prepare_output_folder(out_dir: str) -> None:
    """Create the output folder and make sure it can be written, before any product runs.

    Otherwise a folder that cannot be written fails every product, then the summary with a traceback."""
    if not os.path.exists(out_dir):
        try:
            os.makedirs(out_dir, exist_ok=True)
        except OSError as err:
            raise OutputError(
                f"Cannot create the output folder '{out_dir}' ({err.strerror or err}). "
                "Choose a folder you can write to."
            ) from err
    check_destination(os.path.join(out_dir, "summary.csv"), [])
    # A summary in use (on Windows: loaded in QGIS, open in a spreadsheet) is said now, not
    # after every product has run.
    for name in ("summary.gpkg", "summary_fields.csv"):
        check_replaceable(os.path.join(out_dir, name), IN_FOLDER)


def plan_items(inputs: list[str], pattern: str = "") -> list[Item]:
    """The batch's products with their mask names (tile and sensing time; unique, stable)."""
    sources = [
        s
        for s in discovery.expand_inputs(inputs, pattern)
        if not _is_batch_mask(s) and not season_layers.is_season_layer(s)
    ]
    sources = _without_stack_masks(sources)
    names = []
    for source in sources:
        gdal.PushErrorHandler("CPLQuietErrorHandler")  # a bad input is reported in its row, not here
        try:
            description = discovery.describe(source)
        except Exception:  # noqa: BLE001 - a bad input still gets a name; its run reports the problem
            description = discovery.describe_by_name(source)
        finally:
            gdal.PopErrorHandler()
        names.append(discovery.mask_name(description, source))
    return [Item(s, n) for s, n in zip(sources, discovery.unique_names(names))]


def _without_stack_masks(sources: list[str]) -> list[str]:
    """Leave out the product mask of a stack among the inputs (the stack itself uses it).

    Prepare Sentinel-2 product writes it beside the stack; in a folder of prepared stacks each
    mask would otherwise be taken for a product and reported failed ('8-bit ... picture')."""
    rasters = [s for s in sources if s.lower().endswith((".tif", ".tiff", ".vrt"))]
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        masks = {os.path.abspath(m) for m in map(product.product_mask_of, rasters) if m}
    finally:
        gdal.PopErrorHandler()
    return [s for s in sources if s not in rasters or os.path.abspath(s) not in masks]


def _is_batch_mask(source: str) -> bool:
    """Whether ``source`` is a mask an earlier batch wrote (its record beside it), its masked imagery or SOURCE.

    With the products' folder as the output folder, a rerun would otherwise take its own masks for
    products and report each one failed (and do the masked imagery, which describes itself as
    the product, again as one)."""
    if not source.lower().endswith(".tif"):
        return False
    stem = source[: -len(".tif")]
    for suffix in SUFFIXES:
        if stem.endswith(suffix):
            source = stem[: -len(suffix)] + source[-len(".tif") :]
            break
    record = _read_record(record_path(source))
    return isinstance(record, dict) and "format" in record and "row" in record


# -- the record beside each mask


def record_path(mask: str) -> str:
    return os.path.splitext(mask)[0] + ".json"


def _record(identity: discovery.Identity, options: BatchOptions, area: areas.Area | None, run_plan) -> dict:
    """What the mask depends on, as the plan resolved it: models (with their sha256) and thresholds."""
    models_used = {m.card.id: m.card.sha256 or sha256_of(Path(m.path)) for m in run_plan.probability.models}
    settings = run_plan.merge.settings
    return {
        "format": RECORD_FORMAT,
        "input": identity.as_dict(),
        "parameters": options.recorded(),
        "resolved": {
            "cloud_models": list(run_plan.probability.cloud_models),
            "shadow_model": run_plan.probability.shadow_model,
            "cloud_threshold": settings.cloud_threshold,
            "shadow_threshold": settings.shadow_threshold,
            "most_likely_class": settings.most_likely_class,
            "resolution": run_plan.probability.resolution,
            "product_kind": settings.product_kind,
        },
        "area": area.fingerprint() if area is not None else None,
        "models": models_used,
        "plugin_version": plugin_version(),
    }


def _read_record(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _write_json(path: str, values: dict) -> None:
    """Atomic: a record is whole or absent."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = ""
    try:
        with tempfile.NamedTemporaryFile(
            "w", dir=folder, prefix=".record-", suffix=".json", delete=False, encoding="utf-8"
        ) as handle:
            tmp = handle.name
            json.dump(values, handle, indent=1, default=str)
        os.chmod(tmp, 0o644)  # NamedTemporaryFile makes it private; a mask's record is not
        swap(tmp, path, IN_FOLDER)
    finally:
        discard(tmp)  # gone after the swap; left only when something failed


# -- one product


def _looks_like_product(source: str) -> bool:
    return source.lower().endswith((".zip", ".safe", ".safe/")) or os.path.basename(source) in product.METADATA_FILES


def _stack(source: str, folder: str) -> tuple[str, str | None]:
    """The band stack the engine reads and the product's own mask, for a product or a raster."""
    if _looks_like_product(source) and not product.is_product(source):
        raise product.ProductError(
            product.zip_problem(source)
            or (
                f"'{source}' is not a readable Sentinel-2 product: the zip is damaged (an interrupted download?) "
                "or holds no MTD_MSIL2A.xml / MTD_MSIL1C.xml. Download the product again."
            )
        )
    if product.is_product(source):
        stack, mask = os.path.join(folder, "stack.vrt"), os.path.join(folder, "product_mask.vrt")
        _, written = product.prepare(source, stack, mask, 10.0)
        return stack, written
    return source, product.product_mask_of(source)


def run_product(
    item: Item,
    options: BatchOptions,
    out_dir: str,
    area: areas.Area | None = None,
    force: bool = False,
    feedback: Feedback | None = None,
) -> Row:
    """Make one product's mask (or keep an up-to-date one) and its summary row.

    Never raises for a bad product (its row says why), only when cancelled."""
    started = time.perf_counter()
    row = Row(input=item.source)
    mask = os.path.join(out_dir, f"{item.name}.tif")
    try:
        identity = discovery.identity(item.source)
        if _looks_like_product(item.source) and not product.is_product(item.source):
            _stack(item.source, "")  # raises with the message a user can act on
        description = discovery.describe(item.source)
        row.product, row.tile, row.sensed = description.product, description.tile, description.sensed
        row.level, row.baseline = description.level, description.baseline
        with tempfile.TemporaryDirectory(prefix="cloudmask-batch-") as tmp:
            stack, product_mask = _stack(item.source, tmp)
            request = _request(stack, product_mask, mask, options)
            # Every choice resolved before any pixel is read, on scratch output names: the plan
            # also checks that its outputs can be replaced, and on Windows a mask loaded in QGIS
            # cannot be, though an up-to-date one is only kept.
            record = _record(identity, options, area, pipeline.plan(_scratch(request, tmp)))
            old = _read_record(record_path(mask))
            if not force and old and os.path.exists(mask) and {k: old.get(k) for k in record} == record:
                kept = Row.from_dict(old["row"])
                kept.source, figures = _kept_source(request, options, area, old, tmp, feedback)
                kept.set_provenance(figures)
                kept.masked = _masked_imagery(stack, mask, options, area, old, feedback)
                kept.reused, kept.seconds = True, round(time.perf_counter() - started, 3)
                return kept
            run_plan = pipeline.plan(request)  # the real outputs' checks, before anything goes
            _remove_stale(mask)
            row.footprint = discovery.footprint_wkt(stack)
            step = Share(feedback, 0.0, 0.8) if options.masked and feedback else feedback
            _make_mask(request, run_plan, options, area, row, step)
            row.masked = _masked_imagery(stack, mask, options, area, None, feedback and Share(feedback, 0.8, 1.0))
        row.mask, row.status = mask, "ok"
        extra = {"masked": {"path": row.masked, "bands": options.masked_bands}} if row.masked else {}
        if row.source:
            extra["source"] = _source_entry(row.source, row.as_dict())
        _write_json(record_path(mask), {**record, "row": row.as_dict(), **extra})
    except Cancelled:
        raise
    except Exception as err:  # noqa: BLE001 - the row carries it; the batch goes on
        row.status, row.error = "failed", _message(err)
        if not row.product:
            named = discovery.describe_by_name(item.source)
            row.product, row.tile, row.sensed, row.level = named.product, named.tile, named.sensed, named.level
    row.seconds = round(time.perf_counter() - started, 3)
    return row


def _remove_stale(mask: str) -> None:
    """An outdated mask and record go before the new run: never a new record on an old mask.

    The mask goes first: one in use (on Windows: loaded in QGIS) fails the product now, named,
    with its record still describing it.
    """
    beside = [p for path in (masked_path(mask), source_path(mask)) for p in (path, path + ".aux.xml")]
    for path in (mask, mask + ".aux.xml", *beside, record_path(mask)):
        remove(path, IN_FOLDER)


def masked_path(mask: str) -> str:
    return os.path.splitext(mask)[0] + MASKED_SUFFIX + ".tif"


def source_path(mask: str) -> str:
    return os.path.splitext(mask)[0] + SOURCE_SUFFIX + ".tif"


def _source_entry(path: str, figures: dict) -> dict:
    """The record's entry for a SOURCE raster: its path and its figures (lower-case keys)."""
    return {"path": path, "figures": {k.lower(): figures[k.lower()] for k in provenance.FIGURES}}


def _kept_source(
    request: pipeline.ImproveRequest,
    options: BatchOptions,
    area: areas.Area | None,
    old: dict,
    tmp: str,
    feedback: Feedback | None,
) -> tuple[str, dict | None]:
    """For a kept mask: its SOURCE raster and figures, with the option on ("", None off).

    Kept when the record says an earlier run wrote it; else made now by a run whose mask
    goes to ``tmp`` (the kept mask is not rewritten), and the record updated."""
    if not options.source:
        return "", None
    path = request.source
    if path is None:
        raise RuntimeError("the SOURCE option is on but the request has no SOURCE output")
    entry = old.get("source")
    if isinstance(entry, dict) and entry.get("path") == path and os.path.exists(path):
        return path, {k: entry["figures"][k.lower()] for k in provenance.FIGURES}
    scratch = replace(request, mask=os.path.join(tmp, "mask.tif"))
    step = Share(feedback, 0.0, 0.8) if options.masked and feedback else feedback
    figures = _improve(scratch, options, area, step).provenance
    lower = {k.lower(): v for k, v in figures.items()}
    updated = {**old, "row": {**old["row"], **lower, "source": path}, "source": _source_entry(path, lower)}
    _write_json(record_path(request.mask), updated)
    old.update(updated)  # the masked imagery, next, writes the record from it
    return path, figures


def _masked_imagery(
    stack: str, mask: str, options: BatchOptions, area: areas.Area | None, old: dict | None, feedback: Feedback | None
) -> str:
    """With the option on, the product's imagery with its mask applied, beside the mask.

    Only the area's part with an area; kept when an earlier run wrote it with the same bands
    (``old``: that run's record, which this updates). Its path, or "" when the option is off."""
    if not options.masked:
        return ""
    path = masked_path(mask)
    entry = {"path": path, "bands": options.masked_bands}
    if old and old.get("masked") == entry and os.path.exists(path):
        return path
    bands: tuple[int, ...] = ()
    if options.masked_bands.strip():
        names = detect_bands(raster_info(stack).descriptions, options.request.probability.bands)
        wanted = parse_band_list(options.masked_bands)
        missing = [b for b in wanted if b not in names]
        if missing:
            raise BandError(
                f"The product has no band {', '.join(missing)} for its masked imagery (it has "
                f"{', '.join(names)}). Leave those bands out of the masked imagery's bands."
            )
        bands = tuple(names.index(b) + 1 for b in wanted)
    apply_mask.apply_mask(stack, mask, path, feedback=feedback, bands=bands, crop_to_mask=area is not None)
    if old:
        _write_json(record_path(mask), {**old, "masked": entry})
    return path


def _request(stack: str, product_mask: str | None, mask: str, options: BatchOptions) -> pipeline.ImproveRequest:
    """The options' request template, for one product."""
    asked = options.request
    return replace(
        asked,
        probability=replace(asked.probability, s2_raster=stack),
        product_mask=product_mask,
        mask=mask,
        source=source_path(mask) if options.source else None,
    )


def _scratch(request: pipeline.ImproveRequest, folder: str) -> pipeline.ImproveRequest:
    """The same request with its outputs in ``folder``: for deciding, not for writing."""
    return replace(
        request,
        mask=os.path.join(folder, "planned.tif"),
        source=os.path.join(folder, "planned_source.tif") if request.source else None,
    )


def _improve(
    request: pipeline.ImproveRequest,
    options: BatchOptions,
    area: areas.Area | None,
    feedback: Feedback | None,
    run_plan=None,
):
    """The single run's improve (in the area when there is one): its report."""
    if area is None:
        return pipeline.run(run_plan or pipeline.plan(request), feedback)
    if areas.area_window(area, request.probability.s2_raster) is None:
        raise areas.AreaError(
            "The product does not overlap the area: no mask was made. "
            "Check that the area and the product cover the same place."
        )
    return pipeline.improve(request, feedback, areas.Selection(area, blank=options.blank_outside))


def _make_mask(
    request, run_plan, options: BatchOptions, area: areas.Area | None, row: Row, feedback: Feedback | None
) -> None:
    report = _improve(request, options, area, feedback, run_plan)
    if request.source:
        row.source = request.source
        row.set_provenance(report.provenance)
    # The notes are logged once and again when they change: not the SOURCE figures, which differ
    # for every product (the algorithm logs them with each product's line).
    said = provenance.summary(report.provenance) if report.provenance else None
    row.notes = (
        f"Cloud models: {', '.join(report.cloud_models)}; shadow model: {report.shadow_model or 'none'}. "
        + " ".join(n for n in report.notes if n != said)
    )
    whole = areas.mask_fractions(request.mask, request.settings.output_mode)
    row.clear_fraction, row.cloud_fraction, row.shadow_fraction = (
        whole.as_dict()[k] for k in ("CLEAR_FRACTION", "CLOUD_FRACTION", "SHADOW_FRACTION")
    )
    row.valid_pixels = whole.valid
    if area is not None:
        counted = areas.area_fractions(request.mask, area, request.settings.output_mode)
        total = counted.total.as_dict()
        row.area_clear_fraction = total["CLEAR_FRACTION"]
        row.area_cloud_fraction = total["CLOUD_FRACTION"]
        row.area_shadow_fraction = total["SHADOW_FRACTION"]
        row.area_valid_pixels = counted.total.valid
        row.fields = [
            FieldRow(
                name,
                f.as_dict()["CLEAR_FRACTION"],
                f.as_dict()["CLOUD_FRACTION"],
                f.as_dict()["SHADOW_FRACTION"],
                f.valid,
            )
            for name, f in zip(area.names, counted.per_polygon)
        ]


def _message(err: BaseException) -> str:
    """What a user reads in the status column: our messages as they are, anything else named."""
    user_errors = (CloudMaskError, ValueError, LookupError, OSError)
    if isinstance(err, user_errors):
        return str(err) or type(err).__name__
    return (
        f"Unexpected error ({type(err).__name__}: {err}). Details: "
        + traceback.format_exception_only(type(err), err)[-1].strip()
    )


def clean_partials(out_dir: str, items: list[Item]) -> None:
    """Remove the hidden partial files a killed run or worker left for these masks."""
    for item in items:
        for name in (item.name, *(item.name + suffix for suffix in SUFFIXES)):
            for path in Path(out_dir).glob(f".{name}.tif.partial-*"):
                path.unlink(missing_ok=True)


def run_on_cluster(
    items: list[Item],
    options: BatchOptions,
    out_dir: str,
    client,
    area: areas.Area | None = None,
    force: bool = False,
    on_row=None,
) -> list[Row]:
    """Every product as its own task on a Dask cluster (``client``); the rows in the order they finish.

    The hidden partial files that workers killed mid-product leave are removed at the end, whatever
    happened. On KeyboardInterrupt the rows finished so far are in the exception's ``rows``.
    """
    by_name = {f"product-{item.name}": item for item in items}

    def failed(name: str, err: Exception) -> Row:
        return Row(
            input=by_name[name].source,
            status="failed",
            error=f"The product could not be processed on the cluster: {err}",
        )

    jobs = {name: (item, options, out_dir, area, force) for name, item in by_name.items()}
    try:
        return dask_cluster.run(client, run_product, jobs, failed, on_row)
    except KeyboardInterrupt as err:
        err.rows = err.results  # type: ignore[attr-defined]  # the rows so far, for cli.py (getattr)
        raise
    finally:
        clean_partials(out_dir, items)


def run_sequential(
    items: list[Item],
    options: BatchOptions,
    out_dir: str,
    area: areas.Area | None = None,
    force: bool = False,
    feedback: Feedback | None = None,
    on_row=None,
) -> list[Row]:
    """Every product in turn, in this process (the QGIS algorithm and the reference for tests)."""
    feedback = feedback or Feedback()
    rows = []
    for index, item in enumerate(items):
        if feedback.cancelled():
            raise Cancelled("Cancelled by the user.")
        step = Share(feedback, index / len(items), (index + 1) / len(items))
        rows.append(run_product(item, options, out_dir, area, force, step))
        if on_row:
            on_row(rows[-1])
        feedback.progress((index + 1) / len(items))
    return rows
