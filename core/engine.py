"""Streaming tiled inference: one pass over the raster serves every model of a run.

Models that share a tile grid (scheme, tile, overlap) share the tile cutting;
each network runs once per tile even when it gives both cloud and shadow.
Rows are read through a ``RowSource`` cache and finished rows are handed to a
sink as soon as no later tile can change them, so memory is bounded by the
window and tile sizes, never by the raster height. A wide raster is processed
in column stripes (at most ``stripe_cols`` wide, split at a tile column), so
memory does not grow with the width either: a full Sentinel-2 tile runs as
three stripes. Tiles belong to the stripe they start in; what a tile adds past
the stripe's end is kept, per tile row and per tile (never summed), and added in
the next stripe first and one tile at a time: every pixel then gets the same
additions in the same order as in an unsplit run, so the results equal it bit for
bit for any set of tile grids (floating-point addition is not associative, so a
pre-summed carry would not).

The parts: a kind of grid (``GRID_KINDS``, one per card scheme: ``TiledGrid`` for
overlapping tiles, ``PixelGrid`` for per-pixel models) prepares, runs and releases
its tile rows; ``ReadAhead`` is the reader thread; ``Engine`` cuts the stripes,
chooses which grid goes next, keeps the progress and hands finished rows to the sink.

Speed: onnxruntime is the floor, so everything else is kept off its path. One
background thread reads and scales the next tile row of each grid while the
network runs on the current one (one row ahead, so memory stays bounded); the
blending weights of a tile row are computed once, not once per tile and output;
and tiles are cut from a mirror-padded strip with plain slices.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .inference import LoadedModel, infer, preprocess, probabilities
from .progress import Cancelled, Feedback
from .raster import BLOCK_CACHE_BYTES, RowSource, limited_block_cache
from .tiling import AxisPlan, EngineSettings, plan_axis, reflect, stripe_bounds


@dataclass
class Job:
    """One network in the run and which of its outputs are wanted."""

    model: LoadedModel
    bands: list[int]  # indices into the RowSource's band list, in card order
    cloud: bool = True
    shadow: bool = False

    @property
    def key(self) -> str:
        return self.model.card.id

    def outputs(self) -> list[str]:
        return [f"{self.key}:cloud"] * self.cloud + [f"{self.key}:shadow"] * self.shadow


# sink(first_row, first_col, {output: rows x cols}): finished pixels, in row order within a stripe.
Sink = Callable[[int, int, dict[str, np.ndarray]], None]
# What a grid releases: its first and end raster row, and {output: rows x stripe columns}.
Released = tuple[int, int, dict[str, np.ndarray]]


@dataclass(frozen=True)
class Stripe:
    """The columns one pass of a tile grid covers: it finishes ``[first, end)``.

    Its tiles (those that start there) read up to ``read_end``, past ``end`` where they reach across
    the split into the next stripe."""

    first: int = 0
    end: int = 0
    read_end: int = 0
    tiles: tuple[int, ...] = ()  # tile columns, in order

    @property
    def width(self) -> int:
        return self.end - self.first


# What a stripe's tiles added past its end, for the next stripe: {tile row: {tile column:
# {output or WEIGHT: rows x columns}}}, tiles in the order they were added.
Carried = dict[int, dict[int, dict[str, np.ndarray]]]

WEIGHT = ""  # key of the blending weight among the carried arrays


@dataclass
class Progress:
    """An engine's steps done out of ``total``, reported to ``feedback``.

    Its own object, not the engine's methods: the grids hold it, and a grid holding the
    engine would make a reference cycle that keeps the engine, its models' buffers and
    its rows alive until Python's cycle collector runs, at any later moment and on any
    thread (freeing them so, after the run, crashed QGIS's Python now and then)."""

    feedback: Feedback
    total: int = 0
    done: int = 0

    def check_cancel(self) -> None:
        if self.feedback.cancelled():
            raise Cancelled("Cancelled by the user.")

    def tick(self, count: int) -> None:
        """``count`` more steps done; raises ``Cancelled`` when the user cancelled."""
        self.done += count
        self.feedback.progress(min(1.0, self.done / max(1, self.total)))
        self.check_cancel()


@dataclass
class RunContext:
    """What the grids of one engine share.

    The rows, the bands' nodata, the offset, the settings, and the engine's progress:
    ``progress.tick`` counts steps done and raises ``Cancelled`` when the user cancels, so
    a grid needs no engine of its own."""

    source: RowSource
    nodata: list[float | None]
    offset: float
    settings: EngineSettings
    progress: Progress
    # Batch input buffers by shape, shared: the grids' jobs take turns.
    buffers: dict[tuple, np.ndarray] = field(default_factory=dict)


@dataclass
class Grid:
    """One tile grid's jobs and its progress down the current stripe.

    A kind of grid (see ``GRID_KINDS``) says which tile rows a block of rows needs, how a
    tile row is prepared (in the reader thread), run, and which rows it then releases; the
    engine only chooses which grid goes next."""

    jobs: list[Job]
    rows: AxisPlan
    cols: AxisPlan
    context: RunContext
    stripe: Stripe = field(default_factory=Stripe)
    # The tile rows this engine runs: those that touch its block of rows (all of them: one block).
    first_index: int = 0
    end_index: int = 0
    next_row: int = 0  # the next tile row to run

    @property
    def finished(self) -> bool:
        return self.next_row >= self.end_index

    def tile_rows(self, first: int, end: int) -> tuple[int, int]:
        """The tile rows that raster rows ``[first, end)`` need."""
        raise NotImplementedError

    def units(self, stripes: int) -> int:
        """Progress steps (tiles or blocks) of the whole run, over ``stripes`` stripes."""
        raise NotImplementedError

    def stripe_cuts(self) -> list[int] | None:
        """Columns where stripes should split (``None``: anywhere)."""
        raise NotImplementedError

    @property
    def narrowest_stripe(self) -> int:
        """The narrowest stripe this grid allows."""
        raise NotImplementedError

    def stripe_of(self, first: int, end: int) -> Stripe:
        raise NotImplementedError

    def start_stripe(self, first: int, end: int, first_row: int) -> None:
        """Forget the previous stripe's rows. ``first_row``: the block's first raster row."""
        self.next_row = self.first_index
        self.stripe = self.stripe_of(first, end)

    def prepare(self, index: int) -> Any:
        """Everything tile row ``index`` needs before the network.

        Runs in the reader thread, which is the only thread that touches the ``RowSource``."""
        raise NotImplementedError

    def run(self, prepared: Any) -> None:
        """Run the networks on tile row ``next_row`` (as ``prepare`` gave it) and go to the next."""
        raise NotImplementedError

    def release(self) -> Released:
        """The rows the tile row just run finished."""
        raise NotImplementedError

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Rows of tile row ``index`` (mirrored past the edges).

        Also the validity of its real rows, and the first real row it covers."""
        source, nodata = self.context.source, self.context.nodata
        start = self.rows.starts[index]
        tile = self.rows.tile
        if self.rows.mirror:
            wanted = reflect(np.arange(start, start + tile), source.height)
        else:
            wanted = np.arange(max(start, 0), min(start + tile, source.height))
        lo, hi = int(wanted.min()), int(wanted.max()) + 1
        data = source.rows(lo, hi)
        if not np.array_equal(wanted, np.arange(lo, hi)):  # mirrored at an edge: gather the rows
            data = data[:, wanted - lo, :]
        # Inside the raster it stays a view: the RowSource never writes into a block it handed out.
        invalid = np.zeros(data.shape[1:], dtype=bool)
        for b, nd in enumerate(nodata):
            if nd is not None:
                invalid |= data[b] == nd
            if data.dtype.kind == "f":
                invalid |= ~np.isfinite(data[b])
        return data, ~invalid, start


@dataclass
class TiledGrid(Grid):
    """Image models: overlapping tiles, blended by their weights.

    The networks see context, so a row is released only once no later tile changes it;
    what a tile adds past the stripe's end is carried over to the next stripe."""

    # Weighted sums and weight sums of the stripe's unfinished rows, from raster row acc_first.
    acc_first: int = 0
    acc: dict[str, np.ndarray] = field(default_factory=dict)
    weight: np.ndarray | None = None
    # Blending weights of the current tile row, per tile column (see _tile_weight).
    weights_key: tuple = ()
    weights: dict[int, np.ndarray] = field(default_factory=dict)
    carry_out: Carried = field(default_factory=dict)
    carry_in: Carried = field(default_factory=dict)

    def tile_rows(self, first: int, end: int) -> tuple[int, int]:
        """The tile rows to run for raster rows ``[first, end)``, as (first, last) tile row.

        Every tile row that touches them (so each of their pixels gets every addition, in
        order, that a whole-raster run gives it), up to the one after which they are all final."""
        rows = self.rows
        lo = next(j for j in range(len(rows)) if rows.span(j)[1] > first)
        hi = next((k for k in range(lo, len(rows)) if rows.final_row(k) >= end), len(rows) - 1)
        return lo, hi + 1

    def units(self, stripes: int) -> int:
        return (self.end_index - self.first_index) * len(self.cols)  # each tile is in one stripe

    def stripe_cuts(self) -> list[int] | None:
        return [s for s in self.cols.starts if s > 0]  # at a tile column: few tiles reach across

    @property
    def narrowest_stripe(self) -> int:
        return self.cols.tile  # what a tile carries across a split must end inside the next stripe

    def stripe_of(self, first: int, end: int) -> Stripe:
        cols = self.cols
        tiles = tuple(j for j in range(len(cols)) if first <= cols.span(j)[0] < end)
        return Stripe(first, end, max([end] + [cols.span(j)[1] for j in tiles]), tiles)

    def start_stripe(self, first: int, end: int, first_row: int) -> None:
        """Start a stripe, and the accumulating for it at ``first_row``.

        What the previous stripe carried over becomes this one's input."""
        super().start_stripe(first, end, first_row)
        self.acc_first = first_row
        self.acc, self.weight = {}, None
        self.weights_key, self.weights = (), {}
        self.carry_in, self.carry_out = self.carry_out, {}

    def prepare(self, index: int) -> tuple[np.ndarray, int, dict[str, np.ndarray]]:
        data, valid, start = self.read(index)
        # Mirror-pad the stripe's columns once for the whole row so that every tile is a slice.
        tiles = self.stripe.tiles
        first = self.cols.starts[tiles[0]]
        columns = reflect(np.arange(first, self.cols.starts[tiles[-1]] + self.cols.tile), self.context.source.width)
        prepared = {job.key: self._padded(job, data, first, columns, self.stripe.first) for job in self.jobs}
        return valid, start, prepared  # the raw strip is not needed any more: free it now

    def _padded(self, job: Job, data: np.ndarray, first: int, columns: np.ndarray, x0: int) -> np.ndarray:
        """The job's bands over ``columns``, still as digital numbers.

        ``columns`` are raster columns ``first``, ``first + 1``, ... mirrored past the edges;
        ``data`` starts at raster column ``x0``. Digital numbers because the tiles are cut from
        it and scaled per batch, so the row read ahead costs half what float32 would. The inside
        is copied as a slice (gathering every column would be most of the reader's time); only
        the mirrored margins are gathered."""
        x = np.empty((len(job.bands), data.shape[1], len(columns)), dtype=data.dtype)
        lo = max(0, -first)
        hi = max(lo, min(len(columns), self.context.source.width - first))
        for k, band in enumerate(job.bands):
            rows = data[band]
            x[k, :, lo:hi] = rows[:, first + lo - x0 : first + hi - x0]
            x[k, :, :lo] = rows[:, columns[:lo] - x0]
            x[k, :, hi:] = rows[:, columns[hi:] - x0]
            # The model sees nodata as Sentinel-2's own nodata, 0, whatever value marks it
            # here: a nodata of 65535 read as bright cloud made the valid pixels around the
            # nodata border cloud. The pixels stay nodata.
            nodata = self.context.nodata[band]
            if nodata is not None and nodata != 0:
                x[k][x[k] == nodata] = 0
        if x.dtype.kind == "f":
            # NaN (a float raster's usual nodata) would spread through a network's
            # convolutions and void every pixel of the tile.
            np.nan_to_num(x, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        return x

    def run(self, prepared: tuple[np.ndarray, int, dict[str, np.ndarray]]) -> None:
        """Weighted accumulation of the row's tiles, in batches."""
        valid, start, padded = prepared
        index = self.next_row
        r_lo, r_hi = self.rows.span(index)
        # Rows already released get zero weight from this tile (the window's edge is 0).
        r_lo = max(r_lo, self.acc_first)
        self._extend(r_hi)
        row_weights = self.rows.weights[index][r_lo - start : r_hi - start]
        real_valid = valid[r_lo - start : r_hi - start]
        key = (index, r_lo, r_hi)
        if self.weights_key != key:
            self.weights_key, self.weights = key, {}
        acc_rows = slice(r_lo - self.acc_first, r_hi - self.acc_first)
        self._add_carried(index, acc_rows)
        first = self.stripe.first
        batch: list[int] = []
        for j in self.stripe.tiles:
            c_lo, c_hi = self.cols.span(j)
            if not real_valid[:, c_lo - first : c_hi - first].any():
                self.context.progress.tick(1)
                continue
            batch.append(j)
            if len(batch) == self.context.settings.batch_size:
                self._run_batch(batch, padded, start, row_weights, r_lo, r_hi)
                batch = []
        if batch:
            self._run_batch(batch, padded, start, row_weights, r_lo, r_hi)
        invalid = ~real_valid[:, : self.stripe.width]
        for name in self.acc:
            self.acc[name][acc_rows][invalid] = np.nan
        self.next_row += 1

    def _add_carried(self, index: int, acc_rows: slice) -> None:
        """Add what the previous stripe's tiles added to the same rows, before this stripe's tiles.

        One tile at a time and in their order (as an unsplit run adds them)."""
        for carried in self.carry_in.pop(index, {}).values():
            for name, values in carried.items():
                target = self.weight if name == WEIGHT else self.acc[name]
                if target is None:
                    raise RuntimeError("carried-over tiles before the stripe's accumulators")
                target[acc_rows, : values.shape[1]] += values

    def _add(self, name: str, j: int, rows: slice, c_lo: int, values: np.ndarray) -> None:
        """Add tile ``j``'s ``values`` (its columns from ``c_lo``) to an accumulator.

        The part past the stripe's end is kept for the next stripe instead."""
        inside = min(values.shape[1], self.stripe.end - c_lo)
        target = self.weight if name == WEIGHT else self.acc[name]
        if target is None:
            raise RuntimeError("a tile added before the stripe's accumulators")
        at = c_lo - self.stripe.first
        target[rows, at : at + inside] += values[:, :inside]
        if inside < values.shape[1]:
            self.carry_out.setdefault(self.next_row, {}).setdefault(j, {})[name] = values[:, inside:].copy()

    def _tile_weight(self, j: int, row_weights: np.ndarray) -> np.ndarray:
        """Weight of tile column ``j`` over its real pixels in the current tile row.

        Computed once per row, not per output and per tile. Computed as a float64 outer
        product, then float32: the masks depend on that order to the bit."""
        w = self.weights.get(j)
        if w is None:
            c_lo, c_hi = self.cols.span(j)
            c0 = self.cols.starts[j]
            w = np.outer(row_weights, self.cols.weights[j][c_lo - c0 : c_hi - c0]).astype(np.float32)
            self.weights[j] = w
        return w

    def _run_batch(self, batch, padded, start, row_weights, r_lo, r_hi) -> None:
        # Each tile is cut, scaled, and later turned into probabilities and blended while
        # it is in the CPU's cache: a pass over the whole batch for each step is slower.
        acc_rows = slice(r_lo - self.acc_first, r_hi - self.acc_first)
        rows = slice(r_lo - start, r_hi - start)
        for job in self.jobs:
            out = infer(job.model, self._batch_input(job, batch, padded[job.key]))
            for k, j in enumerate(batch):
                cloud, shadow = probabilities(job.model.card, out[k : k + 1])
                c_lo, c_hi = self.cols.span(j)
                c0 = self.cols.starts[j]
                w = self._tile_weight(j, row_weights)
                for name, probs in (
                    (f"{job.key}:cloud", cloud if job.cloud else None),
                    (f"{job.key}:shadow", shadow if job.shadow else None),
                ):
                    if probs is not None:
                        # In place: w * p into the probabilities' own buffer, then add.
                        tile = probs[0, rows, c_lo - c0 : c_hi - c0]
                        self._add(name, j, acc_rows, c_lo, np.multiply(w, tile, out=tile))
        for j in batch:
            self._add(WEIGHT, j, acc_rows, self.cols.span(j)[0], self._tile_weight(j, row_weights))
        self.context.progress.tick(len(batch))

    def _batch_input(self, job: Job, batch: list[int], strip: np.ndarray) -> np.ndarray:
        """The network's float32 input for ``batch``.

        Each tile is cut straight from the row's digital numbers and scaled in place, in one
        buffer kept from batch to batch (a fresh one costs the system a page fault per 4 KB,
        every batch)."""
        tile, first = self.cols.tile, self.cols.starts[self.stripe.tiles[0]]
        shape = (self.context.settings.batch_size, strip.shape[0], tile, tile)
        buffer = self.context.buffers.get(shape)
        if buffer is None:
            buffer = self.context.buffers[shape] = np.empty(shape, dtype=np.float32)
        x = buffer[: len(batch)]
        for k, j in enumerate(batch):
            x[k] = strip[:, :, self.cols.starts[j] - first : self.cols.starts[j] - first + tile]
            preprocess(job.model.card, x[k], self.context.offset, in_place=True)
        return x

    def _extend(self, hi: int) -> None:
        """Grow the accumulators (the columns the stripe finishes) down to row ``hi``."""
        width = self.stripe.width
        names = [n for job in self.jobs for n in job.outputs()]
        if self.weight is None:
            self.weight = np.zeros((0, width), dtype=np.float32)
            self.acc = {n: np.zeros((0, width), dtype=np.float32) for n in names}
        if hi > self.acc_first + self.weight.shape[0]:
            self.weight = _grown(self.weight, hi - self.acc_first)
            self.acc = {n: _grown(a, hi - self.acc_first) for n, a in self.acc.items()}

    def release(self) -> Released:
        """The rows no tile after the one just run changes, blended."""
        first = self.acc_first
        count = max(0, self.rows.final_row(self.next_row - 1) - first)
        if self.weight is None:
            raise RuntimeError("rows released before any tile row was accumulated")
        weight = self.weight[:count]
        out = {}
        unweighted = ~(weight > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            for name, acc in self.acc.items():
                out[name] = np.divide(acc[:count], weight)
                np.copyto(out[name], np.float32(np.nan), where=unweighted)
        self.weight = self.weight[count:]
        self.acc = {name: acc[count:] for name, acc in self.acc.items()}
        self.acc_first = first + count
        return first, first + count, out


@dataclass
class PixelGrid(Grid):
    """Per-pixel models (s2cloudless): a tile row is a block of rows, finished when predicted.

    Without context there are no weights and nothing to carry between stripes."""

    done_rows: int = 0  # rows handed out so far
    finished_rows: Released = (0, 0, {})  # what the row just run gives

    def tile_rows(self, first: int, end: int) -> tuple[int, int]:
        return first // self.rows.tile, -(-end // self.rows.tile)

    def units(self, stripes: int) -> int:
        return (self.end_index - self.first_index) * stripes  # one step per block, per stripe

    def stripe_cuts(self) -> list[int] | None:
        return None

    @property
    def narrowest_stripe(self) -> int:
        return 1

    def stripe_of(self, first: int, end: int) -> Stripe:
        return Stripe(first, end, end)

    def start_stripe(self, first: int, end: int, first_row: int) -> None:
        super().start_stripe(first, end, first_row)
        self.done_rows = self.rows.starts[self.first_index]

    def prepare(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        data, valid, _ = self.read(index)
        return data, valid

    def run(self, prepared: tuple[np.ndarray, np.ndarray]) -> None:
        data, valid = prepared
        width = self.stripe.width
        out = self._predict(data[:, :, :width], valid[:, :width])
        lo = self.done_rows
        self.done_rows = lo + data.shape[1]
        self.finished_rows = (lo, self.done_rows, out)
        self.next_row += 1

    def release(self) -> Released:
        released, self.finished_rows = self.finished_rows, (0, 0, {})
        return released

    def _predict(self, data: np.ndarray, valid: np.ndarray) -> dict[str, np.ndarray]:
        """Each job's probabilities of the valid pixels, in batches of ``pixel_batch``; NaN elsewhere."""
        context = self.context
        out = {}
        flat_valid = valid.reshape(-1)
        idx = np.flatnonzero(flat_valid)
        for job in self.jobs:
            x = data[job.bands].reshape(len(job.bands), -1)[:, idx]
            x = preprocess(job.model.card, x, context.offset).T.copy()
            cloud = np.full(flat_valid.shape, np.nan, dtype=np.float32)
            shadow = cloud.copy()
            step = context.settings.pixel_batch
            for a in range(0, len(idx), step):
                c, s = probabilities(job.model.card, infer(job.model, x[a : a + step]))
                if c is not None:
                    cloud[idx[a : a + step]] = c
                if s is not None:
                    shadow[idx[a : a + step]] = s
                context.progress.check_cancel()
            if job.cloud:
                out[f"{job.key}:cloud"] = cloud.reshape(valid.shape)
            if job.shadow:
                out[f"{job.key}:shadow"] = shadow.reshape(valid.shape)
        context.progress.tick(1)
        return out


# The kind of grid each tiling scheme of the cards (modelstore.cards.SCHEMES) runs as.
GRID_KINDS: dict[str, type[Grid]] = {
    "mirror-tukey": TiledGrid,
    "centre-crop": TiledGrid,
    "pixel": PixelGrid,
}


class ReadAhead:
    """The reader thread: prepares each grid's next tile row while the network runs.

    One row ahead, so memory stays bounded. Between ``start`` and ``stop`` only: ``stop``
    (the engine calls it on any exit: done, cancelled, an error in the run or in the reader)
    drops the queued read, waits for the one in flight (a single tile row), and leaves no
    thread behind."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._ahead: dict[int, Future] = {}

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cloudmask-reader")

    def next(self, grid: Grid) -> Any:
        """The grid's next tile row, prepared; and start preparing the one after.

        It was read ahead when an earlier call started it; else it is prepared now."""
        if self._pool is None:
            raise RuntimeError("ReadAhead.next before start")
        index = grid.next_row
        future = self._ahead.pop(id(grid), None)
        if future is None:
            future = self._pool.submit(grid.prepare, index)
        if index + 1 < grid.end_index:
            self._ahead[id(grid)] = self._pool.submit(grid.prepare, index + 1)
        return future.result()  # re-raises the reader's error here

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool, self._ahead = None, {}


class Engine:
    """One pass of the tile grids over a block of raster rows (all of them by default).

    It goes stripe by stripe; finished rows go to a sink in order."""

    def __init__(
        self,
        source: RowSource,
        jobs: list[Job],
        nodata: list[float | None],
        offset: float = 0.0,
        settings: EngineSettings | None = None,
        feedback: Feedback | None = None,
        rows: tuple[int, int] | None = None,
    ):
        self.source = source
        self.settings = settings or EngineSettings()
        self.feedback = feedback or Feedback()
        self.first_row, self.end_row = rows or (0, source.height)
        self.progress = Progress(self.feedback)
        self.grids = self._grids(jobs, RunContext(source, nodata, offset, self.settings, self.progress))
        self.bounds = self._stripe_bounds()
        self.progress.total = sum(g.units(len(self.bounds) - 1) for g in self.grids)

    def _grids(self, jobs: list[Job], context: RunContext) -> list[Grid]:
        by_grid: dict[tuple, list[Job]] = {}
        for job in jobs:
            c = job.model.card
            by_grid.setdefault((c.scheme, c.tile, c.overlap), []).append(job)
        h, w = self.source.height, self.source.width
        grids = [
            GRID_KINDS[grid[0]](js, plan_axis(h, *grid), plan_axis(w, *grid), context) for grid, js in by_grid.items()
        ]
        for g in grids:
            g.first_index, g.end_index = g.tile_rows(self.first_row, self.end_row)
        return grids

    def _stripe_bounds(self) -> list[int]:
        width = self.source.width
        if self.settings.in_memory or width <= self.settings.stripe_cols:
            return [0, width]
        # Split where the first grid with a preference wants; per-pixel grids split anywhere.
        cuts = next((c for c in (g.stripe_cuts() for g in self.grids) if c is not None), list(range(256, width, 256)))
        narrowest = max(g.narrowest_stripe for g in self.grids)
        return stripe_bounds(width, self.settings.stripe_cols, cuts, narrowest)

    def run(self, sink: Sink) -> None:
        """Predict the whole raster, handing finished rows to ``sink`` in order.

        The reader thread lives only inside this call."""
        reader = ReadAhead()
        reader.start()
        try:
            # Outputs are written as they finish, not kept in GDAL's cache; each block of
            # rows at work has its own row of output blocks in progress.
            with limited_block_cache(BLOCK_CACHE_BYTES * max(1, self.settings.workers)):
                for x0, x1 in zip(self.bounds, self.bounds[1:]):
                    for grid in self.grids:
                        grid.start_stripe(x0, x1, self.first_row)
                    self.source.window(x0, max(g.stripe.read_end for g in self.grids))
                    self._run(sink, x0, reader)
        finally:
            reader.stop()

    def _run(self, sink: Sink, x0: int, reader: ReadAhead) -> None:
        """One stripe (starting at column ``x0``), top to bottom."""
        pending: dict[str, list[np.ndarray]] = {}
        frontier = {id(g): self.first_row for g in self.grids}
        written = self.first_row
        while not all(g.finished for g in self.grids):
            grid = min((g for g in self.grids if not g.finished), key=lambda g: frontier[id(g)])
            _, hi, finished = self._advance(grid, reader)
            frontier[id(grid)] = hi
            for name, strip in finished.items():
                pending.setdefault(name, []).append(strip)
            ready = min(frontier.values())
            if ready > written:
                out = {}
                for name, parts in pending.items():
                    parts = [p for p in parts if len(p)]
                    whole = np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
                    out[name] = whole[: ready - written]
                    pending[name] = [whole[ready - written :]]
                sink(written, x0, out)
                written = ready

    def _advance(self, grid: Grid, reader: ReadAhead) -> Released:
        """Run the grid's next tile row; the block's rows it finished."""
        grid.run(reader.next(grid))
        return self._in_block(*grid.release())

    def _in_block(self, lo: int, hi: int, finished: dict[str, np.ndarray]) -> Released:
        """Only the block's rows of what a tile row finished.

        The tile rows at its edges also finish rows of the neighbouring blocks, which those blocks give."""
        first = max(lo, self.first_row)
        end = max(min(hi, self.end_row), first)
        if (first, end) == (lo, hi):
            return lo, hi, finished
        return first, end, {name: s[first - lo : end - lo] for name, s in finished.items()}


def _grown(rows: np.ndarray, height: int) -> np.ndarray:
    """``rows`` with zero rows below, ``height`` in all.

    A fresh zeroed array (the system hands out zero pages) with the old rows copied in: cheaper
    than concatenating an array of zeros, which writes every zero once more, once per tile row."""
    grown = np.zeros((height, rows.shape[1]), dtype=rows.dtype)
    grown[: len(rows)] = rows
    return grown


# -- several blocks of rows at once ----------------------------------------------------------
def row_blocks(height: int, count: int, align: int = 256) -> list[tuple[int, int]]:
    """``count`` blocks of rows of about equal height, split at multiples of ``align``.

    ``align`` is the outputs' block height, so that no output block is written by two of them."""
    cuts = sorted({round(height * i / count / align) * align for i in range(1, count)})
    cuts = [c for c in cuts if 0 < c < height]
    return list(zip([0] + cuts, cuts + [height]))


class _BlockFeedback(Feedback):
    """One block's progress as its share of the whole.

    It stops when the user cancels or another block failed."""

    def __init__(
        self,
        parent: Feedback,
        lock: threading.Lock,
        shares: list[float],
        weights: list[float],
        index: int,
        stop: threading.Event,
    ):
        self.parent, self.lock, self.shares, self.weights = parent, lock, shares, weights
        self.index, self.stop = index, stop

    def progress(self, fraction: float) -> None:
        with self.lock:
            self.shares[self.index] = fraction
            self.parent.progress(sum(s * w for s, w in zip(self.shares, self.weights)))

    def cancelled(self) -> bool:
        return self.stop.is_set() or self.parent.cancelled()


def run_in_row_blocks(
    open_source: Callable[[], RowSource],
    height: int,
    jobs: list[Job],
    nodata: list[float | None],
    offset: float,
    settings: EngineSettings,
    feedback: Feedback,
    sink: Sink,
) -> None:
    """Predict the whole raster as ``settings.workers`` blocks of rows at once, on threads.

    Each block is an ``Engine`` with its own reader; threads suffice because numpy, GDAL and
    onnxruntime let go of Python's lock while they work.

    Why row blocks: with the network on a GPU, reading, scaling and blending on one CPU core
    take many times the network's own time. Each block runs every tile row that touches
    it, so the one or two tile rows at a seam are run by both blocks (a few percent more
    network work), and every pixel gets exactly the additions, in the same order, that a
    one-block run gives it: the results are the same bit for bit. ``sink`` is called from
    every block (each in row order, the blocks interleaved) and must accept that.
    """
    blocks = row_blocks(height, 1 if settings.in_memory else settings.workers)
    if len(blocks) == 1:
        source = open_source()
        try:
            Engine(source, jobs, nodata, offset, settings, feedback).run(sink)
        finally:
            source.close()
        return
    lock, stop = threading.Lock(), threading.Event()
    shares, weights = [0.0] * len(blocks), [(b - a) / height for a, b in blocks]

    def one(index: int, block: tuple[int, int]) -> None:
        source = open_source()
        try:
            part = _BlockFeedback(feedback, lock, shares, weights, index, stop)
            Engine(source, jobs, nodata, offset, settings, part, rows=block).run(sink)
        finally:
            source.close()

    errors: list[BaseException] = []
    with ThreadPoolExecutor(len(blocks), thread_name_prefix="cloudmask-rows") as pool:
        try:
            for future in as_completed([pool.submit(one, i, block) for i, block in enumerate(blocks)]):
                error = future.exception()
                if error is not None:
                    stop.set()  # the other blocks stop at their next tile
                    errors.append(error)
        except BaseException:  # Ctrl-C while waiting: the blocks stop too, at their next tile
            stop.set()
            raise
    if errors:  # the cause, not the other blocks' stops
        raise next((e for e in errors if not isinstance(e, Cancelled)), errors[0])
