"""A run resolved once into a frozen plan, before any pixel is read.

A request says what the caller asked for (paths, model ids or nothing, optional
thresholds); :func:`plan` (and :func:`plan_probabilities`, :func:`plan_merge` for
the single steps) turns it into a plan in which every decision is taken: the
Sentinel-2 raster checked once (a product becomes its VRT stack), its processing
level and radiometric offset, the models (defaults chosen here and nowhere else)
with their cards, the bands read, the product mask and its kind, the final
decision (thresholds or the most likely class) and the outputs. Every problem a
user can fix is found here, before the long work starts. Everything downstream only reads the plan; requests are
never changed.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from . import bands as band_names
from . import decision as decisions
from . import merge as merge_rules
from .errors import SettingsError
from .inputs import processing_level, radiometric_offset, read_sentinel2
from .modelstore import catalogue
from .modelstore.cards import ModelCard, install_models_hint
from .raster import RasterError, RasterInfo, raster_info, require_north_up
from .regrid import check_product_mask, in_metres
from .sentinel2 import product as s2_product
from .staging import check_outputs
from .tiling import EngineSettings
from .windowed_merge import MergePlan

# -- requests: what the caller asks for


@dataclass(frozen=True)
class ProbabilityRequest:
    s2_raster: str  # a raster, a Sentinel-2 product (.SAFE, .zip, MTD file) or a SENTINEL2 URI
    cloud_models: tuple[str, ...] | list[str] = ()  # ids or .onnx paths; empty: the default
    shadow_model: str | None = None  # id or .onnx path; None: the default where a shadow is wanted
    bands: str = ""  # comma-separated band names, one per raster band; empty: detect
    # Processing resolution in metres: 0, the raster's; None, the models' own (models_resolution)
    # for a mask, the raster's for probabilities on their own (FarmVibes.AI's probability ops
    # take no resolution, and a probability raster is read pixel by pixel).
    resolution: float | None = None
    provider: str = "auto"
    in_memory: bool = False
    window_rows: int = EngineSettings.window_rows
    batch_size: int = 0  # tiles per network call; 0: what suits the device (CPU 4, GPU up to 64)
    stripe_cols: int = EngineSettings.stripe_cols
    workers: int = 0  # blocks of rows at once; 0: what suits the device (CPU 1, GPU several)
    threads: int = 0  # onnxruntime intra-op threads; 0: one per CPU
    ensemble: bool = False  # no cloud model given: every installed one of the level, not the best
    work_dir: str = ""  # where a product's VRT stack is written; empty: the system's temporary folder


@dataclass(frozen=True)
class ProbabilityOutputs:
    """Where the probability rasters go (None: not kept).

    ``choices.OPTIONAL_OUTPUTS`` names each field's Processing output."""

    cloud: str | None = None
    shadow: str | None = None
    uncertainty: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        """Each output's path by its field's name (cloud, shadow, uncertainty)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def paths(self) -> tuple[str | None, ...]:
        return tuple(self.as_dict().values())

    def in_folder(self, folder: str) -> ProbabilityOutputs:
        """The same set of outputs, as files in ``folder`` named after their fields (cloud.tif ...)."""
        return ProbabilityOutputs(
            **{name: os.path.join(folder, f"{name}.tif") if path else None for name, path in self.as_dict().items()}
        )


@dataclass(frozen=True)
class MergeRequest:
    cloud_probability: str | None
    shadow_probability: str | None
    product_mask: str | None  # a raster, or a Sentinel-2 product (its own mask is used)
    settings: merge_rules.MergeSettings
    window_rows: int = 128  # full-width float windows: the merge's share of memory
    work_dir: str = ""


@dataclass(frozen=True)
class ImproveRequest:
    probability: ProbabilityRequest
    product_mask: str | None = None  # None: the mask recorded in a stack made from a product, if any
    # How to merge: product kind, dilation, minimum area, output mode. Its thresholds are
    # not read: the plan's come from cloud_threshold / shadow_threshold or the model cards.
    settings: merge_rules.MergeSettings = field(default_factory=merge_rules.MergeSettings)
    cloud_threshold: float | None = None  # None: the cloud models' recommended value
    shadow_threshold: float | None = None  # None: the shadow model's recommended value
    mask: str = ""
    outputs: ProbabilityOutputs = field(default_factory=ProbabilityOutputs)
    ensemble: bool = False  # no cloud model given: every installed one of the level
    source: str | None = None  # the SOURCE output (provenance.py): which source flagged each pixel


# -- plans: what will be done


@dataclass(frozen=True)
class ModelUse:
    """One network of the run, and which of its outputs the run uses."""

    card: ModelCard
    path: Path
    cloud: bool
    shadow: bool


@dataclass(frozen=True)
class ProbabilityPlan:
    raster: RasterInfo  # the Sentinel-2 raster (a product's VRT stack)
    band_names: tuple[str, ...]  # Sentinel-2 name of each raster band
    level: str  # L1C or L2A
    offset: float  # radiometric offset of the digital numbers
    models: tuple[ModelUse, ...]  # each network once, in the order given
    raster_bands: tuple[int, ...]  # 1-based raster bands read: the union of the models' bands
    outputs: ProbabilityOutputs  # the final paths the caller keeps (None: not kept)
    recommended: decisions.Recommended  # what the models' cards recommend: recorded with the probabilities
    resolution: float = 0.0  # coarser processing resolution in metres; 0: the raster's own
    provider: str = "auto"
    threads: int = 0
    engine: EngineSettings = field(default_factory=EngineSettings)

    @property
    def cloud_models(self) -> tuple[str, ...]:
        return tuple(m.card.id for m in self.models if m.cloud)

    @property
    def shadow_model(self) -> str | None:
        return next((m.card.id for m in self.models if m.shadow), None)

    @property
    def computed(self) -> tuple[bool, ...]:
        """Which probability rasters the run computes, in ``ProbabilityOutputs``' order.

        The cloud and the shadow probability where a model gives them (the merge needs them, kept or
        not), the uncertainty only when it is kept."""
        return (bool(self.cloud_models), bool(self.shadow_model), bool(self.outputs.uncertainty and self.cloud_models))

    @property
    def cards(self) -> dict[str, ModelCard]:
        return {m.card.id: m.card for m in self.models}

    @property
    def nodata(self) -> list[float | None]:
        """Nodata of each band read.

        Where digital numbers (unsigned integers) declare none, 0: ESA's value for no data, which no
        measurement takes. A stack of the product's own files declares none (gdalbuildvrt -separate
        of the JP2s), and its tile edge would otherwise be classified and counted in the fractions."""
        default = 0.0 if self.raster.data_type.startswith("UInt") else None
        declared = (self.raster.nodata[b - 1] for b in self.raster_bands)
        return [default if value is None else value for value in declared]


@dataclass(frozen=True)
class RunPlan:
    """The whole improve run: probabilities, then the merge into ``mask``."""

    probability: ProbabilityPlan
    merge: MergePlan
    mask: str
    notes: tuple[str, ...] = ()  # for the user, e.g. the thresholds chosen
    source: str | None = None  # where the SOURCE output goes (None: not written)


# -- planning


def _work_dir(folder: str) -> str:
    return folder or tempfile.gettempdir()


@dataclass(frozen=True)
class _Sentinel2:
    """What the Sentinel-2 raster says of itself, read once: its grid, band names, level and offset."""

    info: RasterInfo
    names: list[str]
    level: str
    offset: float


def _sentinel2(source: str, bands: str) -> _Sentinel2:
    """Open and check the raster (a product's VRT stack already made) and read what it says."""
    info, names = read_sentinel2(source, bands)
    return _Sentinel2(info, names, processing_level(info, names), radiometric_offset(info))


def _product_mask(given: str | None, work_dir: str) -> tuple[str | None, bool]:
    """The product mask to read (a product gives its own mask), and whether it is SCL-coded.

    A mask made here from a product is."""
    if not given:
        return None, False
    path = s2_product.resolve(given, _work_dir(work_dir), mask=True)
    return path, s2_product.is_scl_coded(path)


def choose_models(
    level: str,
    cloud_models,
    shadow_model: str | None,
    ensemble: bool = False,
    cloud: bool = True,
    shadow: str = "optional",
    models_dir: Path | None = None,
) -> tuple[list[str], str | None]:
    """The models a run uses: those given, else the defaults for the raster's ``level``.

    The single place that picks default models: the plan and the dialog (which shows
    what will run) both call it. ``cloud``: a cloud probability is wanted (none given:
    the best installed cloud model, or with ``ensemble`` all of the level); ``shadow``:
    'no', 'optional' (the default if one is installed: a cloud model that gives shadow
    too, else the best shadow model) or 'required'. Raises ``ModelNotFound`` when a
    needed model is not installed.
    """
    clouds = list(cloud_models)
    if cloud and not clouds:
        clouds = catalogue.default_cloud_models(level, ensemble, models_dir)
    chosen = shadow_model
    if chosen is None and shadow != "no":
        chosen = catalogue.default_shadow_model(level, clouds, models_dir)
        if chosen is None and shadow == "required":
            raise catalogue.ModelNotFound(f"No shadow model is installed. {install_models_hint('Install one')}.")
    return clouds, chosen


def _model_uses(clouds: list[str], shadow: str | None, names: list[str]) -> tuple[ModelUse, ...]:
    """Each distinct network once: a model that is both cloud and shadow runs once."""
    wanted: dict[str, list[bool]] = {}
    for ref in clouds:
        wanted.setdefault(ref, [False, False])[0] = True
    if shadow:
        wanted.setdefault(shadow, [False, False])[1] = True
    uses = []
    for ref, (cloud, is_shadow) in wanted.items():
        card, path = catalogue.resolve(ref)
        if cloud and not card.has_cloud:
            raise catalogue.ModelNotFound(f"Model '{card.id}' gives no cloud probability; choose a cloud model.")
        if is_shadow and not card.has_shadow:
            raise catalogue.ModelNotFound(f"Model '{card.id}' gives no shadow probability; choose a shadow model.")
        band_names.band_indices(names, card.bands, card.id)  # a missing band is named here
        uses.append(ModelUse(card, path, cloud, is_shadow))
    return tuple(uses)


def _probability_plan(
    request: ProbabilityRequest,
    raster: _Sentinel2,
    outputs: ProbabilityOutputs,
    ensemble: bool,
    cloud: bool,
    shadow: str,
) -> ProbabilityPlan:
    """The models for ``raster``, the bands they read and what their cards recommend.

    The models are the given ones, else the defaults of the raster's level."""
    info, names = raster.info, raster.names
    clouds, shadow_ref = choose_models(
        raster.level, request.cloud_models, request.shadow_model, ensemble, cloud, shadow
    )
    uses = _model_uses(clouds, shadow_ref, names)
    union: list[str] = []
    for use in uses:
        union.extend(b for b in use.card.bands if b not in union)
    coarse = processing_resolution(request.resolution, uses, info)
    engine = EngineSettings(
        window_rows=request.window_rows,
        batch_size=request.batch_size,
        in_memory=request.in_memory,
        stripe_cols=request.stripe_cols,
        workers=request.workers,
    )
    return ProbabilityPlan(
        raster=info,
        band_names=tuple(names),
        level=raster.level,
        offset=raster.offset,
        models=uses,
        raster_bands=tuple(names.index(b) + 1 for b in union),
        outputs=outputs,
        recommended=_recommended(uses),
        resolution=coarse,
        provider=request.provider,
        threads=request.threads,
        engine=engine,
    )


def _recommended(uses: tuple[ModelUse, ...]) -> decisions.Recommended:
    """What the models' cards recommend: thresholds, and whether to decide by the most likely class.

    Deciding by the most likely class needs one network for cloud and shadow whose card says so."""
    shadow = next((use.card for use in uses if use.shadow), None)
    return decisions.recommended([use.card for use in uses if use.cloud], shadow)


def models_resolution(uses: tuple[ModelUse, ...]) -> float:
    """The resolution the run's models were made for: the finest their cards give.

    The finest, so that no model runs coarser than its authors ran it (ukis at 30 m with
    FarmVibes.AI's 10 m shadow model: 10 m); 0 (the raster's own) when a card gives none."""
    own = [use.card.resolution for use in uses]
    return 0.0 if not all(own) else min(own)


def processing_resolution(wanted: float | None, uses: tuple[ModelUse, ...], info: RasterInfo) -> float:
    """The coarser resolution the models run at, in metres; 0: the raster's own grid.

    ``wanted``: None for the models' own, 0 for the raster's, else metres."""
    if wanted is not None and not (wanted >= 0 and math.isfinite(wanted)):
        raise SettingsError(
            f"The processing resolution {wanted} m is not valid. Give metres, 0 for the "
            "raster's own resolution, or leave it empty for the models' own."
        )
    coarse = models_resolution(uses) if wanted is None else float(wanted)
    if not coarse or coarse <= info.pixel_size * 1.001 or not in_metres(info):
        return 0.0  # never finer than the raster; a grid in degrees has no metres to go by
    min_x, min_y, max_x, max_y = info.bounds
    if min(max_x - min_x, max_y - min_y) < coarse:
        return 0.0  # a raster narrower than one coarse pixel has no coarse grid: run it as it is
    return coarse


def plan_probabilities(request: ProbabilityRequest, outputs: ProbabilityOutputs) -> ProbabilityPlan:
    """The probability rasters on their own (the cloud, ensemble and shadow probability ops).

    A cloud output without a cloud model takes the default for the raster's level;
    a shadow output without a shadow model takes the default shadow model, and
    there must be one. Unless a resolution is given, on the raster's own grid.
    """
    check_outputs([p for p in outputs.paths() if p], [request.s2_raster])
    if request.resolution is None:
        request = replace(request, resolution=0.0)
    raster = _sentinel2(s2_product.resolve(request.s2_raster, _work_dir(request.work_dir)), request.bands)
    return _probability_plan(
        request,
        raster,
        outputs,
        request.ensemble,
        cloud=bool(outputs.cloud),
        shadow="required" if outputs.shadow else "no",
    )


def _product_kind(scl_coded: bool, settings: merge_rules.MergeSettings) -> merge_rules.MergeSettings:
    """A mask made here from a product is SCL-coded: read it so unless told otherwise."""
    if scl_coded and settings.product_kind == "nonzero":
        return replace(settings, product_kind="scl")
    return settings


def plan_merge(request: MergeRequest, mask: str) -> MergePlan:
    """The merge op on its own: probabilities (already on one grid) and the product mask."""
    request.settings.validate()
    inputs = [p or "" for p in (request.cloud_probability, request.shadow_probability, request.product_mask)]
    check_outputs([mask], inputs)
    grid_path = request.cloud_probability or request.shadow_probability
    if not grid_path:
        raise RasterError("The merge needs a cloud or a shadow probability raster.")
    grid = raster_info(grid_path, "probability raster")
    require_north_up(grid, "probability raster")
    for other in (request.cloud_probability, request.shadow_probability):
        if other:
            o = raster_info(other, "probability raster")
            if (o.width, o.height) != (grid.width, grid.height) or o.geotransform != grid.geotransform:
                raise RasterError(
                    "The cloud and shadow probability rasters are not on the same grid. "
                    "Compute both from the same Sentinel-2 raster."
                )
    product, scl_coded = _product_mask(request.product_mask, request.work_dir)
    if product:
        check_product_mask(product, grid)
    return MergePlan(grid, product, _product_kind(scl_coded, request.settings), request.window_rows)


def _check_thresholds(request: ImproveRequest) -> None:
    for value, name in ((request.cloud_threshold, "cloud"), (request.shadow_threshold, "shadow")):
        if value is not None and not 0 <= value <= 1:
            raise SettingsError(
                f"The {name} threshold {value} is outside 0..1. Give a probability "
                "between 0 and 1, or leave it empty for the model's recommended value."
            )


def decision(request: ImproveRequest, probability: ProbabilityPlan) -> decisions.Decision:
    """Given thresholds, else the cards' rule and recommended values, else FarmVibes.AI's defaults.

    The choice is ``decision.decide``'s, which the dialog and the merge on its own use too."""
    return decisions.decide(request.cloud_threshold, request.shadow_threshold, probability.recommended)


def plan(request: ImproveRequest) -> RunPlan:
    """The improve run: every input checked, every choice made; nothing computed yet.

    In this order: the settings and the outputs; the inputs, each resolved and read once
    (a Sentinel-2 product becomes its stack, which records the product's mask for when none
    is given); the models for the raster; the decision, from what their cards recommend.
    """
    request.settings.validate()
    _check_thresholds(request)
    prob = request.probability
    finals = [request.mask] + [p for p in (*request.outputs.paths(), request.source) if p]
    check_outputs(finals, [prob.s2_raster, request.product_mask or ""])
    source = s2_product.resolve(prob.s2_raster, _work_dir(prob.work_dir))
    product, scl_coded = _product_mask(request.product_mask or s2_product.product_mask_of(source), prob.work_dir)
    raster = _sentinel2(source, prob.bands)
    if product:
        check_product_mask(product, raster.info)
    probability = _probability_plan(
        prob, raster, request.outputs, request.ensemble or prob.ensemble, cloud=True, shadow="optional"
    )
    grid = probability.raster
    decided = decision(request, probability)
    settings = replace(
        _product_kind(scl_coded, request.settings),
        cloud_threshold=decided.cloud_threshold,
        shadow_threshold=decided.shadow_threshold,
        most_likely_class=decided.most_likely_class,
    )
    return RunPlan(
        probability,
        MergePlan(grid, product, settings, provenance=bool(request.source)),
        request.mask,
        source=request.source or None,
        notes=(decided.note(), *_resolution_notes(probability), *_level_notes(probability)),
    )


def _resolution_notes(probability: ProbabilityPlan) -> tuple[str, ...]:
    """Say at which resolution the models ran, and how to get the raster's own."""
    if not probability.resolution:
        return ()
    note = (
        f"Processing resolution: {probability.resolution:g} m (the raster's pixels are "
        f"{probability.raster.pixel_size:g} m): the models ran on a coarser grid and each pixel "
        "has the decision of the coarse pixel it lies in. Set the processing resolution to 0 "
        "for the raster's own."
    )
    return (note,)


def _level_notes(probability: ProbabilityPlan) -> tuple[str, ...]:
    """A model chosen for another processing level runs, but says so.

    Otherwise, in a season of L1C and L2A products with one model given, the products of the
    other level would get it silently."""
    return tuple(
        f"Model '{use.card.id}' is made for {use.card.level} products and this raster is "
        f"{probability.level}: its mask may be less accurate (leave the model empty for the "
        f"default of the raster's level)."
        for use in probability.models
        if use.card.level and probability.level and use.card.level != probability.level
    )
