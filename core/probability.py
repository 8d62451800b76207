"""The probability step of a run.

Load the plan's networks, stream the raster through the engine once, and write the cloud,
shadow and uncertainty rasters."""

from __future__ import annotations

import os
import tempfile
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace

import numpy as np
from osgeo import gdal

from . import decision
from .engine import Job, Sink, run_in_row_blocks
from .inference import fallback_note, gpu_workers, load_model
from .plan import ProbabilityOutputs, ProbabilityPlan
from .progress import Feedback
from .raster import (
    BLOCK_CACHE_BYTES,
    PROBABILITY_NODATA,
    RasterError,
    RasterInfo,
    RowSource,
    create_geotiff,
    gdal_try,
    limited_block_cache,
    raster_info,
    write_array,
)
from .regrid import sample_coarse, to_grid
from .tiling import EngineSettings


def _jobs(plan: ProbabilityPlan) -> tuple[list[Job], list[str]]:
    """An engine job per network, with its bands as indices into the bands read; and the loading notes.

    A loading note says, for example, that CUDA fell back to the CPU."""
    union = [plan.band_names[b - 1] for b in plan.raster_bands]
    # On the GPU the run's networks share its memory: each gets its part for its batch.
    sharing = len(plan.models)
    loaded = [(load_model(use.card, use.path, plan.provider, plan.threads, sharing), use) for use in plan.models]
    jobs = [Job(m, [union.index(b) for b in m.card.bands], use.cloud, use.shadow) for m, use in loaded]
    return jobs, list(dict.fromkeys(m.note for m, _ in loaded if m.note))


class ProbabilityWriter:
    """Combines members (mean and spread for ensembles) and writes finished rows.

    Hands the cloud and shadow blocks, exactly as written (float32, nodata PROBABILITY_NODATA),
    to ``flags`` when given, also where no raster is kept (windowed_merge.FlagRecorder)."""

    def __init__(self, info: RasterInfo, jobs: list[Job], paths: ProbabilityOutputs, flags: Sink | None = None):
        self.cloud_keys = [f"{j.key}:cloud" for j in jobs if j.cloud]
        self.shadow_key = next((f"{j.key}:shadow" for j in jobs if j.shadow), None)
        self.flags = flags
        self.targets = {}
        for name, path in paths.as_dict().items():
            if path:
                self.targets[name] = create_geotiff(path, info, 1, gdal.GDT_Float32, PROBABILITY_NODATA)

    def __call__(self, row: int, col: int, finished: dict[str, np.ndarray]) -> None:
        values = {}
        if len(self.cloud_keys) == 1 and "uncertainty" not in self.targets:
            values["cloud"] = finished[self.cloud_keys[0]]  # the mean of one member: itself
        elif self.cloud_keys:
            members = np.stack([finished[k] for k in self.cloud_keys])
            values["cloud"] = members.mean(axis=0)
            if "uncertainty" in self.targets:
                values["uncertainty"] = members.std(axis=0)
        if self.shadow_key:
            values["shadow"] = finished[self.shadow_key]
        wanted = set(self.targets) | ({"cloud", "shadow"} if self.flags else set())
        ready = {}
        for name in wanted & set(values):
            # In place: the engine hands over arrays it never touches again (float32).
            data = values[name].astype(np.float32, copy=False)
            np.copyto(data, PROBABILITY_NODATA, where=~np.isfinite(data))
            ready[name] = data
        for name, ds in self.targets.items():
            write_array(ds, ready[name], col, row)
        if self.flags:
            self.flags(row, col, {name: ready[name] for name in ("cloud", "shadow") if name in ready})

    def close(self) -> None:
        for ds in self.targets.values():
            ds.FlushCache()
        self.targets = {}


# Blocks of rows at once on a GPU (each takes about two cores: its own work and its reader).
# Measured on a full tile on an H200 with 16 cores (scripts/gpu_check.py): see README.
GPU_WORKERS = 4


def device_settings(settings: EngineSettings, jobs: list[Job]) -> EngineSettings:
    """What the devices the networks landed on suit, where the request left it open (0):

    - the batch size: per device, the smallest of the networks';
    - on the GPU, stripes wide enough that a tile row fills a batch (the engine batches
      within a row of a stripe: a 4096 px stripe holds about 20 ukis tiles, a full tile's
      width 55);
    - blocks of rows at once: one on the CPU, where onnxruntime already keeps every core
      busy; on the GPU as many as the cores and the GPU's memory allow, since there the
      network waits for the reading, scaling and blending.
    """
    batch = settings.batch_size or min((j.model.batch_size for j in jobs), default=EngineSettings.batch_size)
    on_gpu = [j.model for j in jobs if j.model.provider == "cuda"]
    gpu_cols = [m.batch_size * m.card.tile for m in on_gpu]
    workers = settings.workers
    if not workers:
        workers = 1
        if on_gpu:
            workers = gpu_workers(on_gpu, GPU_WORKERS)
    return replace(settings, batch_size=batch, stripe_cols=max([settings.stripe_cols, *gpu_cols]), workers=workers)


class BackgroundWriter:
    """Hands finished rows to ``sink`` in a thread of its own.

    That way writing (combining ensemble members, compressing the GeoTIFF blocks) overlaps the
    network's work on the next rows instead of stalling it (on a GPU the writing would decide
    the time).

    The rows keep their order (one writer thread) and at most ``depth`` hand-overs wait,
    so memory stays bounded. An error in the writer is raised in the engine's thread at
    the next hand-over or at ``close``. The engine never changes an array after handing
    it over (it hands over fresh arrays), so nothing is copied."""

    def __init__(self, sink: Sink, depth: int = 2):
        self.sink, self.depth = sink, depth
        self.pool: ThreadPoolExecutor | None = ThreadPoolExecutor(1, thread_name_prefix="cloudmask-writer")
        self.pending: deque[Future] = deque()
        self.lock = threading.Lock()  # blocks of rows hand over from their own threads

    def __call__(self, row: int, col: int, finished: dict[str, np.ndarray]) -> None:
        with self.lock:
            while self.pending and (self.pending[0].done() or len(self.pending) >= self.depth):
                self.pending.popleft().result()  # re-raises the writer's error here
            if self.pool is None:
                raise RuntimeError("rows handed over after close()")
            self.pending.append(self.pool.submit(self.sink, row, col, finished))

    def close(self, drop: bool = False) -> None:
        """Wait for every row to be written; then no writer thread is left.

        ``drop``: after an error, skip those not started and raise nothing."""
        if self.pool is None:
            return
        try:
            while self.pending and not drop:
                self.pending.popleft().result()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool, self.pending = None, deque()


def compute_probabilities(
    plan: ProbabilityPlan, paths: ProbabilityOutputs, feedback: Feedback | None = None, flags: Sink | None = None
) -> tuple[str, ...]:
    """Write the plan's probability rasters to ``paths`` (None: not written).

    With the thresholds their models recommend (:func:`record_thresholds`); the caller stages
    them (see ``staging.py``). ``flags`` also gets every block, on the grid the models run on:
    at a processing resolution the coarse grid (``regrid.coarse_info``), whose decisions
    the caller brings back onto the raster's grid. Returns the notes for the user."""
    jobs, notes = _jobs(plan)
    settings = device_settings(plan.engine, jobs)
    with limited_block_cache(BLOCK_CACHE_BYTES * settings.workers):
        notes += _compute(plan, paths, jobs, settings, feedback, flags)
    record_thresholds(paths, plan)
    return tuple(notes)


def _compute(
    plan: ProbabilityPlan,
    paths: ProbabilityOutputs,
    jobs: list[Job],
    settings: EngineSettings,
    feedback: Feedback | None,
    flags: Sink | None,
) -> list[str]:
    """The engine's run and the rasters' writing; the notes they give."""
    notes = []
    info = plan.raster
    with tempfile.TemporaryDirectory(prefix="cloudmask-") as tmp:
        source_path, bands, run_info, run_paths = info.source, list(plan.raster_bands), info, paths
        if plan.resolution:
            # The models run on the raster sampled at the coarse grid; their results are
            # brought back below.
            source_path = os.path.join(tmp, "coarse.tif")
            run_info = sample_coarse(info, bands, plan.nodata, plan.resolution, source_path)
            bands = list(range(1, len(bands) + 1))
            run_paths = paths.in_folder(tmp)
        notes.extend(small_raster_notes(run_info, jobs, plan))

        def open_source() -> RowSource:
            return RowSource(source_path, bands, plan.engine.window_rows, plan.engine.in_memory, fill=plan.nodata)

        # Flagging on a thread of its own too: the writer's thread can be a run's floor on a GPU.
        flagger = BackgroundWriter(flags, depth=2 * settings.workers) if flags else None
        writer = ProbabilityWriter(run_info, jobs, run_paths, flagger)
        background = BackgroundWriter(writer, depth=2 * settings.workers)
        try:
            run_in_row_blocks(
                open_source,
                run_info.height,
                jobs,
                plan.nodata,
                plan.offset,
                settings,
                feedback or Feedback(),
                background,
            )
            background.close()
            if flagger:
                flagger.close()
        finally:
            background.close(drop=True)  # after an error: stop writing, leave no thread
            if flagger:
                flagger.close(drop=True)
            writer.close()
        notes.extend(dict.fromkeys(n for n in (fallback_note(j.model) for j in jobs) if n))
        if plan.resolution:
            # Each pixel the probabilities of the coarse pixel it lies in, as the mask's
            # decisions: merging these rasters later gives the same mask.
            for coarse_path, final in zip(run_paths.paths(), paths.paths()):
                if final:
                    if coarse_path is None:
                        raise RuntimeError(f"{final} is kept but was not computed")
                    to_grid(coarse_path, info, final, "near")
    return notes


def small_raster_notes(info: RasterInfo, jobs: list[Job], plan: ProbabilityPlan | None = None) -> list[str]:
    """A word for a raster narrower than a model's tile.

    The network then sees a cloud without its surroundings (the rest of its tile is the raster
    mirrored) and tends to call everything clear. Not an error: the run is what was asked for.
    ``info``: the grid the models run on (``plan``'s coarse grid at a processing resolution)."""
    tiles = [
        f"{job.model.card.id}: {job.model.card.tile} px"
        for job in jobs
        if not job.model.card.is_pixel_model and min(info.width, info.height) < job.model.card.tile
    ]
    if not tiles:
        return []
    size = f"The raster is {info.width} x {info.height} pixels"
    if plan is not None and plan.resolution:
        size = (
            f"At the processing resolution of {plan.resolution:g} m the raster is {info.width} x "
            f"{info.height} pixels ({plan.raster.width} x {plan.raster.height} at its own)"
        )
    note = (
        f"{size}, smaller than the tiles the model looks at ({'; '.join(tiles)}): it sees clouds "
        "without their surroundings and may miss them. For a small area, run on the whole scene "
        "and set Extent or Area to process"
        + (", or set the processing resolution to 0." if plan is not None and plan.resolution else ".")
    )
    return [note]


# Where a probability raster records the threshold its model recommends (GDAL metadata), so
# that a merge run later on its own (the modeler's chain) decides as one run would; and the
# model, where it decides by the most likely class (a merge of a cloud and a shadow raster
# from the same such model then does too).
THRESHOLD_KEYS = ("RECOMMENDED_CLOUD_THRESHOLD", "RECOMMENDED_SHADOW_THRESHOLD")
DECISION_KEY = "RECOMMENDED_DECISION"
MODEL_KEY = "MODEL"


def record_thresholds(paths: ProbabilityOutputs, plan: ProbabilityPlan) -> None:
    """Write the cards' recommendations into the probability rasters just computed."""
    cards = plan.cards
    cloud_cards = [cards[m] for m in plan.cloud_models]
    models = plan.recommended
    deciders = (
        cloud_cards[0] if len(cloud_cards) == 1 else None,  # an ensemble's mean is no softmax
        cards[plan.shadow_model] if plan.shadow_model else None,
    )
    for path, key, value, card in zip(
        (paths.cloud, paths.shadow), THRESHOLD_KEYS, (models.cloud_threshold, models.shadow_threshold), deciders
    ):
        items = {key: repr(float(value))} if value is not None else {}
        if card is not None and card.decision == decision.MOST_LIKELY_CLASS:
            items.update({DECISION_KEY: decision.MOST_LIKELY_CLASS, MODEL_KEY: card.id})
        if path and items:
            ds, detail = gdal_try(gdal.Open, path, gdal.GA_Update)
            if ds is None:
                raise RasterError(f"Cannot update the probability raster '{path}': {detail}")
            for name, text in items.items():
                ds.SetMetadataItem(name, text)
            ds = None


def recorded_thresholds(
    cloud_probability: str | None, shadow_probability: str | None
) -> tuple[float | None, float | None]:
    """The thresholds :func:`record_thresholds` wrote (None where absent)."""
    models = recorded(cloud_probability, shadow_probability)
    return models.cloud_threshold, models.shadow_threshold


def recorded(cloud_probability: str | None, shadow_probability: str | None) -> decision.Recommended:
    """What :func:`record_thresholds` wrote.

    The thresholds, and the most likely class where both rasters are given and both come from
    the same model that decides by it."""
    found = []
    rules = []
    for path, key in zip((cloud_probability, shadow_probability), THRESHOLD_KEYS):
        metadata = raster_info(path).metadata if path else {}
        rules.append((metadata.get(DECISION_KEY), metadata.get(MODEL_KEY)))
        value = metadata.get(key)
        try:
            found.append(float(value) if value is not None else None)
        except ValueError:
            found.append(None)
    same_model = rules[0] == rules[1] and rules[0][0] == decision.MOST_LIKELY_CLASS
    return decision.Recommended(found[0], found[1], same_model)
