"""Running one model card's ONNX network on tiles: sessions, scaling, activation.

Sessions are cached per (file, provider) and shared: onnxruntime's ``run`` is
thread-safe, and loading a 40 MB network per run would dominate small jobs.

Where it runs (``EXECUTION_PROVIDER``): ``auto`` and ``cuda`` use the GPU when this
onnxruntime has CUDA, a CUDA session can be created and the GPU has the memory for
a batch; otherwise the CPU, and the model says which and why in one line (its
``note``). A run never fails because of the GPU: an error when the CUDA session is
created or on its first batch falls back to the CPU, and says so.
"""

from __future__ import annotations

import contextlib
import io
import os
import platform
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError
from .modelstore.cards import ModelCard
from .runtime import gpu, home
from .runtime.cpu import available_cores
from .runtime.deps import install_command, runtime_status, shown_command

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

# Tiles per onnxruntime call. CPU: the time per tile hardly changes from 1 to 8 (scripts/bench.py),
# and 4 keeps the batch's working memory small (about 37 MB a ukis tile, measured). CUDA: larger
# batches keep the GPU busy (an H200 ran 734 tiles/s at 8, 1542 at 64); the engine batches within
# one tile row of a stripe, so more than 64 would rarely fill (a full tile's row has 55 tiles).
CPU_BATCH = 4
CUDA_BATCHES = (64, 32, 16, 8)
# GPU memory a batch needs: per pixel of a tile, the ukis networks' measured working memory on the
# CPU (about 570 bytes per pixel, fp32) with a margin for cuDNN's workspaces; plus the CUDA context
# and the weights. Not measured on a GPU: an estimate that errs on the large side.
CUDA_BYTES_PER_PIXEL = 900
CUDA_FIXED_BYTES = 1 << 30
CUDA_MEMORY_SHARE = 0.8  # of the free memory: other programs allocate too


@dataclass(frozen=True)
class LoadedModel:
    card: ModelCard
    path: Path
    session: Any  # onnxruntime's InferenceSession (no type information) or a FallbackSession
    input_name: str
    provider: str
    note: str = ""  # which device runs it and why (e.g. CUDA asked for but not there): the caller tells the user
    batch_size: int = CPU_BATCH  # tiles per call that suit the device it runs on


_SESSIONS: dict[tuple, Any] = {}
_LOCK = threading.Lock()


def _ort():
    status = runtime_status()
    if not status.available:
        raise ModelError(status.problem)
    import onnxruntime

    return onnxruntime


def providers_for(choice: str, available: list[str]) -> tuple[list[str], str]:
    """Execution providers for a user's choice, and a note when CUDA is not there."""
    if choice in ("auto", "cuda") and CUDA in available:
        return [CUDA, CPU], ""
    note = ""
    if choice == "cuda":
        note = (
            "CUDA was requested but this onnxruntime has no CUDA execution provider "
            "(Manage models… → Install GPU support adds it); running on the CPU."
        )
    elif choice == "auto":
        if gpu.driver_description():
            note = (
                "Running on the CPU: an NVIDIA GPU is present but this onnxruntime has no CUDA "
                "support (Manage models… → Install GPU support adds it)."
            )
        else:
            note = "Running on the CPU (no NVIDIA GPU found)."
    return [CPU], note


def _tile_pixels(card: ModelCard) -> int:
    """Pixels in one input of the network: a tile's, or 0 for a per-pixel model.

    The GPU memory estimates count tiles: a per-pixel model's inputs (single pixels) are
    too small to count."""
    return 0 if card.is_pixel_model else card.tile * card.tile


def cuda_batch(card: ModelCard, free_bytes: int | None, sharing: int = 1) -> tuple[int, str]:
    """The largest batch whose estimated GPU memory fits, and a note when none does (0).

    ``sharing``: networks of the same run that will hold GPU memory at the same time."""
    if free_bytes is None:
        return CUDA_BATCHES[0], ""
    budget = free_bytes * CUDA_MEMORY_SHARE / max(1, sharing)
    per_tile = _tile_pixels(card) * CUDA_BYTES_PER_PIXEL
    for batch in CUDA_BATCHES:
        if CUDA_FIXED_BYTES + batch * per_tile <= budget:
            return batch, ""
    need = (CUDA_FIXED_BYTES + CUDA_BATCHES[-1] * per_tile) * max(1, sharing) / CUDA_MEMORY_SHARE
    return 0, (
        f"Running on the CPU: the GPU has {free_bytes / 2**20:.0f} MiB free, and a batch of "
        f"{CUDA_BATCHES[-1]} tiles of '{card.id}' needs about {need / 2**20:.0f} MiB."
    )


def cuda_workers(models: list[LoadedModel], free_bytes: int | None, most: int) -> int:
    """How many batches of every network fit in the GPU's free memory at once (at most ``most``).

    That is the number of row blocks that may run on it together."""
    if free_bytes is None:
        return most
    need = sum(
        CUDA_FIXED_BYTES + m.batch_size * _tile_pixels(m.card) * CUDA_BYTES_PER_PIXEL
        for m in models
        if _tile_pixels(m.card)
    )
    return max(1, min(most, int(free_bytes * CUDA_MEMORY_SHARE // max(1, need))))


def gpu_workers(models: list[LoadedModel], most: int) -> int:
    """Blocks of rows that may run on the GPU together.

    At most ``most`` and half the cores (each block needs a core to read, scale and blend
    while the GPU runs another), and no more than the GPU's free memory holds."""
    device = gpu.gpu(fresh=True)
    limit = max(1, min(most, available_cores() // 2))
    return cuda_workers(models, device.free_mb * 2**20 if device else None, limit)


def load_model(card: ModelCard, path: Path, provider: str = "auto", threads: int = 0, sharing: int = 1) -> LoadedModel:
    """The network in a (cached) session on the device ``provider`` allows.

    With the note that says where it runs. ``sharing``: networks of the run that share the GPU's memory."""
    ort = _ort()
    chosen, note = providers_for(provider, ort.get_available_providers())
    stat = path.stat()
    base = (str(path), stat.st_size, stat.st_mtime_ns, threads)
    batch = CPU_BATCH
    if chosen[0] == CUDA:
        batch, note, chosen = _cuda_plan(card, base, sharing)
    key = base + (tuple(chosen),)
    with _LOCK:
        session = _SESSIONS.get(key)
        if session is None:
            session = (
                _new_cuda_session(ort, path, threads, card, key)
                if chosen[0] == CUDA
                else _new_session(ort, path, chosen, threads, card)
            )
            _SESSIONS[key] = session
    on_gpu = chosen[0] == CUDA and session.provider == "cuda"
    if on_gpu:
        note = f"Running on the GPU ({session.gpu_name or 'CUDA'}), {batch} tiles per batch."
    elif chosen[0] == CUDA:
        note, batch = _CUDA_FAILED.get(key, note), CPU_BATCH
    model = LoadedModel(card, path, session, session.get_inputs()[0].name, "cuda" if on_gpu else "cpu", note, batch)
    check_against_card(model)
    return model


# Sessions whose CUDA run failed (by session key, the reason): later loads go straight to the CPU.
_CUDA_FAILED: dict[tuple, str] = {}


def _cuda_plan(card: ModelCard, base: tuple, sharing: int) -> tuple[int, str, list[str]]:
    """Batch size on the GPU, or the CPU when an earlier CUDA run failed or memory is short."""
    key = base + ((CUDA, CPU),)
    if key in _CUDA_FAILED:
        return CPU_BATCH, _CUDA_FAILED[key], [CPU]
    device = gpu.gpu(fresh=True)
    if device is None and not gpu.has_cuda_driver_library():  # onnxruntime-gpu, but no NVIDIA driver
        return CPU_BATCH, "Running on the CPU (no NVIDIA GPU found).", [CPU]
    batch, short = cuda_batch(card, device.free_mb * 2**20 if device else None, sharing)
    if not batch:
        return CPU_BATCH, short, [CPU]
    return batch, "", [CUDA, CPU]


def _preload(ort) -> str:
    """Load the CUDA and cuDNN libraries from NVIDIA's pip packages beside onnxruntime.

    That way no system CUDA is needed. onnxruntime prints what it cannot load: keep that text
    for the note in case the CUDA session then fails."""
    if not hasattr(ort, "preload_dlls"):
        return ""
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            ort.preload_dlls()
    except Exception as err:  # noqa: BLE001 - a missing folder or library: creating the session will tell
        printed.write(str(err))
    return printed.getvalue().strip()


def _new_cuda_session(ort, path: Path, threads: int, card: ModelCard, key: tuple) -> FallbackSession:
    """A session on the GPU that can fall back to the CPU.

    On the CPU at once when the GPU cannot load the network (the reason is kept in
    ``_CUDA_FAILED`` for the note)."""
    missing = _preload(ort)
    device = gpu.gpu()
    name = device.name if device else ""
    try:
        session = _new_session(ort, path, [CUDA, CPU], threads, card)
    except ModelError as err:
        reason = str(err.__cause__ or err).splitlines()[0][:300]
        _CUDA_FAILED[key] = f"Running on the CPU: the GPU could not load '{card.id}' ({reason})."
        return FallbackSession(_new_session(ort, path, [CPU], threads, card), None, "cpu", name)
    if CUDA not in session.get_providers():
        # onnxruntime quietly drops CUDA when its libraries do not load.
        detail = f" ({missing.splitlines()[0][:200]})" if missing else ""
        _CUDA_FAILED[key] = f"Running on the CPU: the CUDA libraries could not be loaded{detail}."
        return FallbackSession(session, None, "cpu", name)
    return FallbackSession(session, lambda: _new_session(ort, path, [CPU], threads, card), "cuda", name, key)


class FallbackSession:
    """A session on the GPU that moves to the CPU if its first batch fails there.

    After one successful batch an error is a real error (it is raised); before, it is
    taken as the GPU's (out of memory, a kernel the card lacks) and the batch is run
    again on the CPU, in CPU-sized pieces, as is every later batch.

    Batches go to the GPU one at a time. Blocks of rows (``engine.run_in_row_blocks``) call from
    several threads; the GPU runs their batches one after the other anyway, and each
    concurrent run would hold working memory of its own."""

    def __init__(self, session, make_cpu, provider: str, gpu_name: str = "", key: tuple = ()):
        self.session, self.make_cpu, self.provider, self.gpu_name, self.key = (
            session,
            make_cpu,
            provider,
            gpu_name,
            key,
        )
        self.proven = provider != "cuda"
        self.fallback_note = ""
        self._lock = threading.Lock()
        self._gpu = threading.Lock()

    def get_inputs(self):
        return self.session.get_inputs()

    def get_outputs(self):
        return self.session.get_outputs()

    def get_providers(self):
        return self.session.get_providers()

    def run(self, names, feeds):
        if self.proven:
            return self._run(names, feeds)
        try:
            with self._gpu:
                out = self.session.run(names, feeds)
        except Exception as err:  # noqa: BLE001 - any failure on the GPU falls back; onnxruntime's types are private
            with self._lock:
                if self.provider == "cuda":
                    reason = str(err).splitlines()[0][:300] if str(err) else type(err).__name__
                    self.fallback_note = f"The GPU failed on the first batch ({reason}); finished on the CPU."
                    _CUDA_FAILED[self.key] = f"Running on the CPU: an earlier run on the GPU failed ({reason})."
                    self.session, self.provider, self.proven = self.make_cpu(), "cpu", True
            return self._run(names, feeds)
        self.proven = True
        return out

    def _run(self, names, feeds):
        if self.provider == "cuda":
            with self._gpu:
                return self.session.run(names, feeds)
        ((name, x),) = feeds.items()
        if x.ndim != 4 or len(x) <= CPU_BATCH:  # image tiles: a GPU-sized batch in CPU-sized pieces
            return self.session.run(names, feeds)
        parts = [self.session.run(names, {name: x[k : k + CPU_BATCH]}) for k in range(0, len(x), CPU_BATCH)]
        return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]


def fallback_note(model: LoadedModel) -> str:
    """What happened on the GPU during the run, if it had to finish on the CPU."""
    return getattr(model.session, "fallback_note", "")


def _new_session(ort, path: Path, providers: list[str], threads: int, card: ModelCard):
    """Session options chosen from measurements (scripts/bench.py) on the ukis networks.

    - One operator thread per core: these are convolution networks whose operators
      parallelise well; more threads than cores only adds switching.
    - Operators run one after another (inter-op 1, sequential): the graphs are chains.
    - All graph optimisations (fusions, constant folding, layout changes): done once
      per session, and sessions are cached.
    - The CPU memory arena stays on: every call has the same shapes, so buffers are
      reused instead of allocated per batch (turning it off is slower, more so at
      larger batches).
    - No spinning: each session has its own thread pool, and in a one-pass ensemble
      the idle pool of one network kept spinning while the next ran, taking its
      cores (one pass cost 1.35 x the bare inference time of its networks with
      spinning). Alone, a network is as fast without it (within measurement noise).
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or available_cores()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_cpu_mem_arena = True
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    try:
        if providers == [CPU] and _installed(path):
            return _cpu_session(ort, path, options)
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as err:  # onnxruntime raises several private exception types
        text = str(err)
        if "opset" in text.lower() or "version" in text.lower():
            # onnxruntime's own text here is a C++ signature: say it in words, with the command.
            raise ModelError(
                f"Model '{card.id}' ({path}) needs a newer onnxruntime than {runtime_status().version}: "
                "it uses an operator set (opset) this one does not know. Upgrade onnxruntime for QGIS's "
                f"Python with: {shown_command(install_command())}"
            ) from err
        hint = "The file is not a valid ONNX model: reinstall it, or check that the path points at the .onnx file."
        raise ModelError(f"Cannot load model '{card.id}' from {path}: {text.splitlines()[0][:300]}. {hint}") from err


def _cpu_session(ort, path: Path, options):
    """A CPU session from the installed network as optimised by an earlier run.

    Else the network is optimised now and kept for the next run.

    Optimising the graph is most of a session's creation (1.9 s against 0.4 s from the
    optimised file, ukis-6b-l1c on this 2-core machine under load), which every
    ``qgis_process`` run and every product of a batch would pay. The optimised graph computes the
    same operations with the same kernels: its output equals the original's to the bit
    (test_inference_cache.py). Its layout depends on the CPU and the onnxruntime
    version, so the file is kept per both (see ``optimized_model_path``).
    """
    cached = optimized_model_path(path, ort.__version__)
    if cached.exists():
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            session = ort.InferenceSession(str(cached), sess_options=options, providers=[CPU])
        except Exception:  # noqa: BLE001 - a damaged file: optimise again, as the first run did
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        else:
            with contextlib.suppress(OSError):  # in use: see _prune_copies
                os.utime(cached)
            _prune_copies(path, cached)
            return session
    partial = cached.with_name(f"{cached.stem}.{uuid.uuid4().hex}.partial")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only data home: optimise in every run, as before
        return ort.InferenceSession(str(path), sess_options=options, providers=[CPU])
    options.optimized_model_filepath = str(partial)
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=[CPU])
    except Exception:  # noqa: BLE001 - the copy could not be written (disk full...): without it
        with contextlib.suppress(OSError):
            partial.unlink()
        options.optimized_model_filepath = ""
        return ort.InferenceSession(str(path), sess_options=options, providers=[CPU])  # a bad model raises here
    with contextlib.suppress(OSError):  # whole or not at all: two runs may write it at once
        os.replace(partial, cached)
    _prune_copies(path, cached)
    return session


# A kept copy no run has loaded for this long is removed when the network is next loaded.
UNUSED_COPY_DAYS = 14


def _installed(path: Path) -> bool:
    """Whether ``path`` is an installed model: only those get an optimised copy.

    An .onnx anywhere else may be a scratch file, and its copies would pile up in the data home."""
    return path.resolve().parent == home.models_dir().resolve()


def optimized_model_path(path: Path, version: str) -> Path:
    """Where the optimised copy of the network at ``path`` is kept in the data home.

    Named by the file (path, size, time), the onnxruntime version and the CPU, so that a changed
    network, another onnxruntime or a data home moved to another machine never reuses it."""
    stat = path.stat()
    key = "|".join(
        (str(path.resolve()), str(stat.st_size), str(stat.st_mtime_ns), version, platform.machine(), _cpu_identity())
    )
    return home.optimized_copy(path, key)


def _prune_copies(path: Path, kept: Path) -> None:
    """Remove the copies of ``path`` no run has loaded for ``UNUSED_COPY_DAYS``.

    Those are for a network since replaced, an onnxruntime since upgraded or a CPU gone; each
    is up to twice the network's size (80 MB for the ukis networks). A copy in use is refreshed at
    every load, so a data home shared by two kinds of computer keeps both. One a run still
    holds open (Windows) stays until the next time."""
    oldest = time.time() - UNUSED_COPY_DAYS * 86400
    for copy in home.optimized_copies(path):
        with contextlib.suppress(OSError):
            if copy != kept and copy.stat().st_mtime < oldest:
                copy.unlink()


def _cpu_identity() -> str:
    """The CPU's model and instruction sets (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            lines = [line for line in info.read(1 << 16).splitlines() if line.startswith(("model name", "flags"))]
        return "\n".join(sorted(set(lines)))
    except OSError:
        return platform.processor()


def check_against_card(model: LoadedModel) -> None:
    """The network's input must match what the card says we will feed it."""
    card = model.card
    inputs = model.session.get_inputs()
    shape = list(inputs[0].shape)
    want_channels = len(card.bands)
    problem = ""
    if card.input_name and inputs[0].name != card.input_name:
        problem = f"input is named '{inputs[0].name}', the card says '{card.input_name}'"
    elif card.is_pixel_model:
        if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != want_channels):
            problem = f"input shape is {shape}, the card implies [N, {want_channels}]"
    elif len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != want_channels):
        problem = f"input shape is {shape}, the card implies [N, {want_channels}, H, W]"
    elif any(isinstance(d, int) and d != card.tile for d in shape[2:]):
        problem = f"input shape is {shape}, the card's tile size is {card.tile}"
    outputs = model.session.get_outputs()
    if not problem and card.output_index >= len(outputs):
        problem = f"it has {len(outputs)} outputs, the card reads output {card.output_index}"
    if problem:
        raise ModelError(
            f"Model '{card.id}' ({model.path.name}) does not match its card: {problem}. "
            "Fix the card or use the model file it describes."
        )


def preprocess(card: ModelCard, data: np.ndarray, offset: float = 0.0, in_place: bool = False) -> np.ndarray:
    """Scale raw digital numbers as the card says.

    ``data`` is ``[bands, ...]`` in card order.
    ``in_place``: ``data`` is a float32 array of the caller's own, scaled without a copy."""
    x = data if in_place and data.dtype == np.float32 else data.astype(np.float32)
    if card.apply_offset and offset:
        x += np.float32(offset)
        np.maximum(x, 0, out=x)
    if card.scale != 1.0:
        x *= np.float32(card.scale)
    if card.mean:
        shape = (-1,) + (1,) * (x.ndim - 1)
        x -= np.asarray(card.mean, dtype=np.float32).reshape(shape)
        x /= np.asarray(card.std, dtype=np.float32).reshape(shape)
    return x


def activate(card: ModelCard, out: np.ndarray) -> np.ndarray:
    """Model output ``[N, C, ...]`` to per-class probabilities."""
    out = out.astype(np.float32, copy=False)
    if card.activation == "softmax":  # in place (the same operations as out of place, bit for bit)
        e = np.subtract(out, out.max(axis=1, keepdims=True), out=out)
        np.exp(e, out=e)
        return np.divide(e, e.sum(axis=1, keepdims=True), out=e)
    if card.activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-out))
    return out


def run(model: LoadedModel, batch: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Cloud and shadow probability for a batch of preprocessed tiles (or pixels)."""
    return probabilities(model.card, infer(model, batch))


def infer(model: LoadedModel, batch: np.ndarray) -> np.ndarray:
    """The network's raw output ``[N, C, ...]`` for a batch of preprocessed tiles or pixels.

    Checked against the card. Apart from ``probabilities`` so that a caller can
    turn it into probabilities one tile at a time, while the tile is still in the cache."""
    card = model.card
    fed = batch
    if model.provider == "cuda" and batch.ndim == 4 and len(batch) < model.batch_size:
        # One input shape on the GPU: cuDNN tries its kernels for every new shape it sees
        # (seconds each), and a short batch (a tile row's last, nodata tiles left out)
        # would be one. The padding's results are dropped.
        fed = np.concatenate([batch, np.zeros((model.batch_size - len(batch),) + batch.shape[1:], batch.dtype)])
    try:
        out = model.session.run(None, {model.input_name: fed})[card.output_index]
    except Exception as err:
        raise ModelError(
            f"Model '{card.id}' failed on a batch of shape {batch.shape}: "
            f"{str(err).splitlines()[0][:300]}. Check that the card matches the model."
        ) from err
    if fed is not batch and len(out) == len(fed):
        out = out[: len(batch)]
    if out.shape[:1] != batch.shape[:1] or out.shape[2:] != batch.shape[2:]:  # [N, C] per pixel: both ()
        raise ModelError(
            f"Model '{card.id}' returned shape {out.shape} for input {batch.shape}; "
            "its card expects one output per input pixel. Fix the card or the model."
        )
    needed = max(card.cloud_channels + card.shadow_channels) + 1
    if out.shape[1] < needed:
        raise ModelError(
            f"Model '{card.id}' returned {out.shape[1]} channels; its card reads channel "
            f"{needed - 1}. Fix the card or the model."
        )
    return out


def probabilities(card: ModelCard, out: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Cloud and shadow probability from the network's output ``[N, C, ...]``.

    Its buffer is reused for them."""
    probs = activate(card, out)
    return _channels(probs, card.cloud_channels), _channels(probs, card.shadow_channels)


def _channels(probs: np.ndarray, channels) -> np.ndarray | None:
    """The sum of some classes' probabilities; one class is its own channel (no copy)."""
    if not channels:
        return None
    if len(channels) == 1:
        return probs[:, channels[0]]
    return probs[:, list(channels)].sum(axis=1)
