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

import numpy as np

from .inference import LoadedModel, infer, preprocess, probabilities
from .progress import Cancelled, Feedback
from .raster import BLOCK_CACHE_BYTES, RowSource, limited_block_cache
from .tiling import AxisPlan, plan_axis, reflect, stripe_bounds


@dataclass(frozen=True)
class EngineSettings:
    window_rows: int = 256
    # Tiles per onnxruntime call. On CPU the time per tile hardly changes from 1 to 8
    # (measured: scripts/bench.py); 4 keeps the batch (4 x 6 x 256 x 256 float32, 6 MB)
    # small and a tile row of the ukis grid (54 tiles on a full S2 tile) evenly split.
    batch_size: int = 4
    pixel_batch: int = 1 << 18
    in_memory: bool = False
    # Columns per stripe. Peak memory grows with it (about 30 KB per column with the
    # default model): with 4096 a full tile (three stripes) peaks 8 % above a 2745 px
    # square (scripts/bench.py, figure 3); the cost is reading the source blocks under
    # each split twice, unmeasurable in time. IN_MEMORY runs are one stripe.
    stripe_cols: int = 4096
    # Blocks of rows run at once (see run_in_row_blocks); 0: what suits the device (see
    # probability.device_settings).
    workers: int = 1


@dataclass
class Job:
    """One network in the run and which of its outputs are wanted."""

    model: LoadedModel
    bands: list[int]          # indices into the RowSource's band list, in card order
    cloud: bool = True
    shadow: bool = False

    @property
    def key(self) -> str:
        return self.model.card.id

    def outputs(self) -> list[str]:
        return [f"{self.key}:cloud"] * self.cloud + [f"{self.key}:shadow"] * self.shadow


# sink(first_row, first_col, {output: rows x cols}): finished pixels, in row order within a stripe.
Sink = Callable[[int, int, dict[str, np.ndarray]], None]


@dataclass(frozen=True)
class Stripe:
    """The columns one pass of a tile grid covers: it finishes ``[first, end)``; its tiles
    (those that start there) read up to ``read_end``, past ``end`` where they reach across
    the split into the next stripe."""

    first: int = 0
    end: int = 0
    read_end: int = 0
    tiles: tuple[int, ...] = ()  # tile columns, in order

    @property
    def width(self) -> int:
        return self.end - self.first

    @classmethod
    def of(cls, cols: AxisPlan, first: int, end: int, pixel: bool) -> Stripe:
        if pixel:
            return cls(first, end, end)
        tiles = tuple(j for j in range(len(cols)) if first <= cols.span(j)[0] < end)
        return cls(first, end, max([end] + [cols.span(j)[1] for j in tiles]), tiles)


# What a stripe's tiles added past its end, for the next stripe: {tile row: {tile column:
# {output or WEIGHT: rows x columns}}}, tiles in the order they were added.
Carried = dict[int, dict[int, dict[str, np.ndarray]]]


@dataclass
class _Group:
    """One tile grid's jobs and its progress down the current stripe."""

    jobs: list[Job]
    rows: AxisPlan
    cols: AxisPlan
    stripe: Stripe = field(default_factory=Stripe)
    # The tile rows this engine runs: those that touch its block of rows (all of them: one block).
    first_index: int = 0
    end_index: int = 0
    next_row: int = 0  # the next tile row to run
    # Weighted sums and weight sums of the stripe's unfinished rows, from raster row acc_first.
    acc_first: int = 0
    acc: dict[str, np.ndarray] = field(default_factory=dict)
    weight: np.ndarray | None = None
    done_rows: int = 0  # pixel models: rows handed out so far
    # Blending weights of the current tile row, per tile column (see Engine._tile_weight).
    weights_key: tuple = ()
    weights: dict[int, np.ndarray] = field(default_factory=dict)
    carry_out: Carried = field(default_factory=dict)
    carry_in: Carried = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.next_row >= self.end_index

    @property
    def pixel(self) -> bool:
        return self.jobs[0].model.card.is_pixel_model

    def start_stripe(self, first: int, end: int, first_row: int) -> None:
        """Forget the previous stripe's rows; what it carried over becomes this one's input.
        ``first_row``: the block's first raster row, where accumulating starts."""
        self.next_row, self.acc_first = self.first_index, first_row
        self.done_rows = self.rows.starts[self.first_index] if self.pixel else 0
        self.acc, self.weight = {}, None
        self.weights_key, self.weights = (), {}
        self.carry_in, self.carry_out = self.carry_out, {}
        self.stripe = Stripe.of(self.cols, first, end, self.pixel)


WEIGHT = ""  # key of the blending weight among the carried arrays


def block_tile_rows(rows: AxisPlan, pixel: bool, first: int, end: int) -> tuple[int, int]:
    """The tile rows that raster rows ``[first, end)`` need: every tile row that touches
    them (so each of their pixels gets every addition, in order, that a whole-raster run
    gives it), up to the one after which they are all final."""
    if pixel:
        return first // rows.tile, -(-end // rows.tile)
    lo = next(j for j in range(len(rows)) if rows.span(j)[1] > first)
    hi = next((k for k in range(lo, len(rows)) if rows.final_row(k) >= end), len(rows) - 1)
    return lo, hi + 1


class Engine:
    """One pass of the tile grids over a block of raster rows (all of them by default),
    stripe by stripe; finished rows go to a sink in order."""

    def __init__(self, source: RowSource, jobs: list[Job], nodata: list[float | None],
                 offset: float = 0.0, settings: EngineSettings | None = None,
                 feedback: Feedback | None = None, rows: tuple[int, int] | None = None):
        self.source = source
        self.nodata = nodata
        self.offset = offset
        self.settings = settings or EngineSettings()
        self.feedback = feedback or Feedback()
        self.first_row, self.end_row = rows or (0, source.height)
        self.groups = self._group(jobs)
        self.bounds = self._stripe_bounds()
        stripes = len(self.bounds) - 1
        self.total = sum((g.end_index - g.first_index) * (stripes if g.pixel else len(g.cols))
                         for g in self.groups)
        self.done = 0
        self._reader: ThreadPoolExecutor | None = None
        self._ahead: dict[int, Future] = {}
        self._inputs: dict[tuple, np.ndarray] = {}  # batch buffers by shape (jobs take turns)

    def _group(self, jobs: list[Job]) -> list[_Group]:
        by_grid: dict[tuple, list[Job]] = {}
        for job in jobs:
            c = job.model.card
            by_grid.setdefault((c.scheme, c.tile, c.overlap), []).append(job)
        h, w = self.source.height, self.source.width
        groups = [_Group(js, plan_axis(h, *grid), plan_axis(w, *grid)) for grid, js in by_grid.items()]
        for g in groups:
            g.first_index, g.end_index = block_tile_rows(g.rows, g.pixel, self.first_row, self.end_row)
        return groups

    def _stripe_bounds(self) -> list[int]:
        width = self.source.width
        image = [g for g in self.groups if not g.pixel]
        if self.settings.in_memory or width <= self.settings.stripe_cols:
            return [0, width]
        # Split at tile columns of the first grid: few tiles reach across.
        candidates = [s for s in image[0].cols.starts if s > 0] if image else list(range(256, width, 256))
        narrowest = max([g.cols.tile for g in image], default=1)
        return stripe_bounds(width, self.settings.stripe_cols, candidates, narrowest)

    def run(self, sink: Sink) -> None:
        """Predict the whole raster, handing finished rows to ``sink`` in order.

        The reader thread lives only inside this call: on any exit (done, cancelled,
        an error here or in the reader) the queued read is dropped, the one in flight
        (a single tile row) is waited for, and no thread is left behind.
        """
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cloudmask-reader")
        try:
            # Outputs are written as they finish, not kept in GDAL's cache; each block of
            # rows at work has its own row of output blocks in progress.
            with limited_block_cache(BLOCK_CACHE_BYTES * max(1, self.settings.workers)):
                for x0, x1 in zip(self.bounds, self.bounds[1:]):
                    for group in self.groups:
                        group.start_stripe(x0, x1, self.first_row)
                    self.source.window(x0, max(g.stripe.read_end for g in self.groups))
                    self._run(sink, x0)
        finally:
            self._reader.shutdown(wait=True, cancel_futures=True)
            self._reader = None
            self._ahead = {}

    def _run(self, sink: Sink, x0: int) -> None:
        """One stripe (starting at column ``x0``), top to bottom."""
        pending: dict[str, list[np.ndarray]] = {}
        frontier = {id(g): self.first_row for g in self.groups}
        written = self.first_row
        while not all(g.finished for g in self.groups):
            group = min((g for g in self.groups if not g.finished), key=lambda g: frontier[id(g)])
            _, hi, finished = self._advance(group)
            frontier[id(group)] = hi
            for name, strip in finished.items():
                pending.setdefault(name, []).append(strip)
            ready = min(frontier.values())
            if ready > written:
                out = {}
                for name, parts in pending.items():
                    parts = [p for p in parts if len(p)]
                    whole = np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
                    out[name] = whole[:ready - written]
                    pending[name] = [whole[ready - written:]]
                sink(written, x0, out)
                written = ready

    def _check_cancel(self) -> None:
        if self.feedback.cancelled():
            raise Cancelled("Cancelled by the user.")

    def _tick(self, count: int) -> None:
        self.done += count
        self.feedback.progress(min(1.0, self.done / max(1, self.total)))
        self._check_cancel()

    def _strip(self, group: _Group, index: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Rows of tile row ``index`` (mirrored past the edges), the validity of its real
        rows, and the first real row it covers."""
        start = group.rows.starts[index]
        tile = group.rows.tile
        if group.rows.mirror:
            wanted = reflect(np.arange(start, start + tile), self.source.height)
        else:
            wanted = np.arange(max(start, 0), min(start + tile, self.source.height))
        lo, hi = int(wanted.min()), int(wanted.max()) + 1
        data = self.source.rows(lo, hi)
        if not np.array_equal(wanted, np.arange(lo, hi)):  # mirrored at an edge: gather the rows
            data = data[:, wanted - lo, :]
        # Inside the raster it stays a view: the RowSource never writes into a block it handed out.
        invalid = np.zeros(data.shape[1:], dtype=bool)
        for b, nd in enumerate(self.nodata):
            if nd is not None:
                invalid |= data[b] == nd
            if data.dtype.kind == "f":
                invalid |= ~np.isfinite(data[b])
        return data, ~invalid, start

    def _prepare(self, group: _Group, index: int) -> tuple[np.ndarray | None, np.ndarray, int, dict[str, np.ndarray]]:
        """Everything a tile row needs before the network: runs in the reader thread,
        which is the only thread that touches the ``RowSource``."""
        data, valid, start = self._strip(group, index)
        if group.pixel:
            return data, valid, start, {}
        # Mirror-pad the stripe's columns once for the whole row so that every tile is a slice.
        tiles = group.stripe.tiles
        first = group.cols.starts[tiles[0]]
        columns = reflect(np.arange(first, group.cols.starts[tiles[-1]] + group.cols.tile),
                          self.source.width)
        prepared = {job.key: self._padded(job, data, first, columns, group.stripe.first) for job in group.jobs}
        return None, valid, start, prepared  # the raw strip is not needed any more: free it now

    def _padded(self, job: Job, data: np.ndarray, first: int, columns: np.ndarray, x0: int) -> np.ndarray:
        """The job's bands over ``columns`` (raster columns ``first``, ``first + 1``, ...
        mirrored past the edges; ``data`` starts at raster column ``x0``), still as digital
        numbers: the tiles are cut from it and scaled per batch, so the row read ahead
        costs half what float32 would. The inside is copied as a slice (gathering every
        column was most of the reader's time); only the mirrored margins are gathered."""
        x = np.empty((len(job.bands), data.shape[1], len(columns)), dtype=data.dtype)
        lo = max(0, -first)
        hi = max(lo, min(len(columns), self.source.width - first))
        for k, band in enumerate(job.bands):
            rows = data[band]
            x[k, :, lo:hi] = rows[:, first + lo - x0:first + hi - x0]
            x[k, :, :lo] = rows[:, columns[:lo] - x0]
            x[k, :, hi:] = rows[:, columns[hi:] - x0]
            # The model sees nodata as Sentinel-2's own nodata, 0, whatever value marks it
            # here: a nodata of 65535 read as bright cloud made the valid pixels around the
            # nodata border cloud. The pixels stay nodata.
            nodata = self.nodata[band]
            if nodata is not None and nodata != 0:
                x[k][x[k] == nodata] = 0
        if x.dtype.kind == "f":
            # NaN (a float raster's usual nodata) would spread through a network's
            # convolutions and void every pixel of the tile.
            np.nan_to_num(x, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        return x

    def _next_row(self, group: _Group) -> tuple[np.ndarray | None, np.ndarray, int, dict[str, np.ndarray]]:
        """This tile row (read ahead when possible), and start reading the next one."""
        index = group.next_row
        future = self._ahead.pop(id(group), None)
        if self._reader is None:  # not inside run(): read in this thread
            return self._prepare(group, index)
        if future is None:
            future = self._reader.submit(self._prepare, group, index)
        if index + 1 < group.end_index:
            self._ahead[id(group)] = self._reader.submit(self._prepare, group, index + 1)
        return future.result()  # re-raises the reader's error here

    def _advance(self, group: _Group) -> tuple[int, int, dict[str, np.ndarray]]:
        index = group.next_row
        data, valid, start, prepared = self._next_row(group)
        if group.pixel:
            if data is None:
                raise RuntimeError("a pixel model's rows were not read")
            width = group.stripe.width
            result = self._pixel_rows(group, data[:, :, :width], valid[:, :width])
        else:
            self._accumulate(group, index, prepared, valid, start)
            result = None
        group.next_row += 1
        if result is not None and data is not None:  # the pixel model's rows
            lo = group.done_rows
            group.done_rows = lo + data.shape[1]
            return self._in_block(lo, group.done_rows, result)
        return self._in_block(*self._release(group, index))

    def _in_block(self, lo: int, hi: int, finished: dict[str, np.ndarray]) -> tuple[int, int, dict[str, np.ndarray]]:
        """Only the block's rows of what a tile row finished (the tile rows at its edges
        also finish rows of the neighbouring blocks, which those blocks give)."""
        first = max(lo, self.first_row)
        end = max(min(hi, self.end_row), first)
        if (first, end) == (lo, hi):
            return lo, hi, finished
        return first, end, {name: s[first - lo:end - lo] for name, s in finished.items()}

    # -- pixel models: no context, so a strip is finished as soon as it is predicted
    def _pixel_rows(self, group: _Group, data: np.ndarray, valid: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        flat_valid = valid.reshape(-1)
        idx = np.flatnonzero(flat_valid)
        for job in group.jobs:
            x = data[job.bands].reshape(len(job.bands), -1)[:, idx]
            x = preprocess(job.model.card, x, self.offset).T.copy()
            cloud = np.full(flat_valid.shape, np.nan, dtype=np.float32)
            shadow = cloud.copy()
            step = self.settings.pixel_batch
            for a in range(0, len(idx), step):
                c, s = probabilities(job.model.card, infer(job.model, x[a:a + step]))
                if c is not None:
                    cloud[idx[a:a + step]] = c
                if s is not None:
                    shadow[idx[a:a + step]] = s
                self._check_cancel()
            if job.cloud:
                out[f"{job.key}:cloud"] = cloud.reshape(valid.shape)
            if job.shadow:
                out[f"{job.key}:shadow"] = shadow.reshape(valid.shape)
        self._tick(1)
        return out

    # -- image models: weighted accumulation over overlapping tiles
    def _accumulate(self, group: _Group, index: int, prepared: dict[str, np.ndarray], valid,
                    start: int) -> None:
        r_lo, r_hi = group.rows.span(index)
        # Rows already released get zero weight from this tile (the window's edge is 0).
        r_lo = max(r_lo, group.acc_first)
        self._extend(group, r_hi)
        row_weights = group.rows.weights[index][r_lo - start:r_hi - start]
        real_valid = valid[r_lo - start:r_hi - start]
        key = (index, r_lo, r_hi)
        if group.weights_key != key:
            group.weights_key, group.weights = key, {}
        acc_rows = slice(r_lo - group.acc_first, r_hi - group.acc_first)
        self._add_carried(group, index, acc_rows)
        first = group.stripe.first
        batch: list[int] = []
        for j in group.stripe.tiles:
            c_lo, c_hi = group.cols.span(j)
            if not real_valid[:, c_lo - first:c_hi - first].any():
                self._tick(1)
                continue
            batch.append(j)
            if len(batch) == self.settings.batch_size:
                self._run_batch(group, batch, prepared, start, row_weights, r_lo, r_hi)
                batch = []
        if batch:
            self._run_batch(group, batch, prepared, start, row_weights, r_lo, r_hi)
        invalid = ~real_valid[:, :group.stripe.width]
        for name in group.acc:
            group.acc[name][acc_rows][invalid] = np.nan

    def _add_carried(self, group: _Group, index: int, acc_rows: slice) -> None:
        """Before this stripe's tiles: what the previous stripe's tiles added to the same
        rows, one tile at a time and in their order (as an unsplit run adds them)."""
        for carried in group.carry_in.pop(index, {}).values():
            for name, values in carried.items():
                target = group.weight if name == WEIGHT else group.acc[name]
                if target is None:
                    raise RuntimeError("carried-over tiles before the stripe's accumulators")
                target[acc_rows, :values.shape[1]] += values

    def _add(self, group: _Group, name: str, j: int, rows: slice, c_lo: int, values: np.ndarray) -> None:
        """Add tile ``j``'s ``values`` (its columns from ``c_lo``) to an accumulator; the
        part past the stripe's end is kept for the next stripe instead."""
        inside = min(values.shape[1], group.stripe.end - c_lo)
        target = group.weight if name == WEIGHT else group.acc[name]
        if target is None:
            raise RuntimeError("a tile added before the stripe's accumulators")
        at = c_lo - group.stripe.first
        target[rows, at:at + inside] += values[:, :inside]
        if inside < values.shape[1]:
            group.carry_out.setdefault(group.next_row, {}).setdefault(j, {})[name] = values[:, inside:].copy()

    def _tile_weight(self, group: _Group, j: int, row_weights: np.ndarray) -> np.ndarray:
        """Weight of tile column ``j`` over its real pixels in the current tile row,
        computed once per row (it used to be recomputed per output and per tile).
        Computed exactly as before (float64 outer product, then float32) so that
        results stay byte-identical."""
        w = group.weights.get(j)
        if w is None:
            c_lo, c_hi = group.cols.span(j)
            c0 = group.cols.starts[j]
            w = np.outer(row_weights, group.cols.weights[j][c_lo - c0:c_hi - c0]).astype(np.float32)
            group.weights[j] = w
        return w

    def _run_batch(self, group, batch, prepared, start, row_weights, r_lo, r_hi) -> None:
        # Each tile is cut, scaled, and later turned into probabilities and blended while
        # it is in the CPU's cache: a pass over the whole batch for each step was slower.
        acc_rows = slice(r_lo - group.acc_first, r_hi - group.acc_first)
        rows = slice(r_lo - start, r_hi - start)
        for job in group.jobs:
            out = infer(job.model, self._batch_input(group, job, batch, prepared[job.key]))
            for k, j in enumerate(batch):
                cloud, shadow = probabilities(job.model.card, out[k:k + 1])
                c_lo, c_hi = group.cols.span(j)
                c0 = group.cols.starts[j]
                w = self._tile_weight(group, j, row_weights)
                for name, probs in ((f"{job.key}:cloud", cloud if job.cloud else None),
                                    (f"{job.key}:shadow", shadow if job.shadow else None)):
                    if probs is not None:
                        # In place: w * p into the probabilities' own buffer, then add.
                        tile = probs[0, rows, c_lo - c0:c_hi - c0]
                        self._add(group, name, j, acc_rows, c_lo, np.multiply(w, tile, out=tile))
        for j in batch:
            self._add(group, WEIGHT, j, acc_rows, group.cols.span(j)[0], self._tile_weight(group, j, row_weights))
        self._tick(len(batch))

    def _batch_input(self, group: _Group, job: Job, batch: list[int], strip: np.ndarray) -> np.ndarray:
        """The network's float32 input for ``batch``: each tile cut straight from the row's
        digital numbers and scaled in place, in one buffer kept from batch to batch (a
        fresh one costs the system a page fault per 4 KB, every batch)."""
        tile, first = group.cols.tile, group.cols.starts[group.stripe.tiles[0]]
        shape = (self.settings.batch_size, strip.shape[0], tile, tile)
        buffer = self._inputs.get(shape)
        if buffer is None:
            buffer = self._inputs[shape] = np.empty(shape, dtype=np.float32)
        x = buffer[:len(batch)]
        for k, j in enumerate(batch):
            x[k] = strip[:, :, group.cols.starts[j] - first:group.cols.starts[j] - first + tile]
            preprocess(job.model.card, x[k], self.offset, in_place=True)
        return x

    def _extend(self, group: _Group, hi: int) -> None:
        """Grow the accumulators (the columns the stripe finishes) down to row ``hi``."""
        width = group.stripe.width
        names = [n for job in group.jobs for n in job.outputs()]
        if group.weight is None:
            group.weight = np.zeros((0, width), dtype=np.float32)
            group.acc = {n: np.zeros((0, width), dtype=np.float32) for n in names}
        if hi > group.acc_first + group.weight.shape[0]:
            group.weight = _grown(group.weight, hi - group.acc_first)
            group.acc = {n: _grown(a, hi - group.acc_first) for n, a in group.acc.items()}

    def _release(self, group: _Group, index: int) -> tuple[int, int, dict[str, np.ndarray]]:
        first = group.acc_first
        count = max(0, group.rows.final_row(index) - first)  # rows no later tile changes
        if group.weight is None:
            raise RuntimeError("rows released before any tile row was accumulated")
        weight = group.weight[:count]
        out = {}
        unweighted = ~(weight > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            for name, acc in group.acc.items():
                out[name] = np.divide(acc[:count], weight)
                np.copyto(out[name], np.float32(np.nan), where=unweighted)
        group.weight = group.weight[count:]
        group.acc = {name: acc[count:] for name, acc in group.acc.items()}
        group.acc_first = first + count
        return first, first + count, out


def _grown(rows: np.ndarray, height: int) -> np.ndarray:
    """``rows`` with zero rows below, ``height`` in all. A fresh zeroed array (the system
    hands out zero pages) with the old rows copied in: cheaper than concatenating an
    array of zeros, which writes every zero once more, once per tile row."""
    grown = np.zeros((height, rows.shape[1]), dtype=rows.dtype)
    grown[:len(rows)] = rows
    return grown


# -- several blocks of rows at once ----------------------------------------------------------
def row_blocks(height: int, count: int, align: int = 256) -> list[tuple[int, int]]:
    """``count`` blocks of rows of about equal height, split at multiples of ``align`` (the
    outputs' block height), so that no output block is written by two of them."""
    cuts = sorted({round(height * i / count / align) * align for i in range(1, count)})
    cuts = [c for c in cuts if 0 < c < height]
    return list(zip([0] + cuts, cuts + [height]))


class _BlockFeedback(Feedback):
    """One block's progress as its share of the whole; it stops when the user cancels or
    another block failed."""

    def __init__(self, parent: Feedback, lock: threading.Lock, shares: list[float], weights: list[float],
                 index: int, stop: threading.Event):
        self.parent, self.lock, self.shares, self.weights = parent, lock, shares, weights
        self.index, self.stop = index, stop

    def progress(self, fraction: float) -> None:
        with self.lock:
            self.shares[self.index] = fraction
            self.parent.progress(sum(s * w for s, w in zip(self.shares, self.weights)))

    def cancelled(self) -> bool:
        return self.stop.is_set() or self.parent.cancelled()


def run_in_row_blocks(open_source: Callable[[], RowSource], height: int, jobs: list[Job],
                 nodata: list[float | None], offset: float, settings: EngineSettings,
                 feedback: Feedback, sink: Sink) -> None:
    """Predict the whole raster as ``settings.workers`` blocks of rows at once, each an
    ``Engine`` with its own reader, on threads (numpy, GDAL and onnxruntime let go of
    Python's lock while they work).

    Why bands: with the network on a GPU, reading, scaling and blending on one CPU core
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
