"""Running one model card's ONNX network on tiles: sessions, scaling, activation.

Sessions are cached per (file, provider) and shared: onnxruntime's ``run`` is
thread-safe, and loading a 40 MB network per run would dominate small jobs.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cards import ModelCard
from .deps import runtime_status
from .errors import CloudMaskError

PROVIDERS = ("auto", "cpu", "cuda")


class ModelError(CloudMaskError, RuntimeError):
    """A model file cannot be loaded or does not behave as its card says."""


@dataclass(frozen=True)
class LoadedModel:
    card: ModelCard
    path: Path
    session: object
    input_name: str
    provider: str
    note: str = ""  # e.g. CUDA asked for but not there: the caller tells the user


_SESSIONS: dict[tuple, object] = {}
_LOCK = threading.Lock()


def _ort():
    status = runtime_status()
    if not status.available:
        raise ModelError(status.problem)
    import onnxruntime
    return onnxruntime


def providers_for(choice: str, available: list[str]) -> tuple[list[str], str]:
    """Execution providers for a user's choice, and a note when CUDA is not there."""
    if choice in ("auto", "cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"], ""
    note = ""
    if choice == "cuda":
        note = ("CUDA was requested but this onnxruntime has no CUDA execution provider "
                "(install onnxruntime-gpu for QGIS's Python); running on the CPU.")
    return ["CPUExecutionProvider"], note


def load_model(card: ModelCard, path: Path, provider: str = "auto", threads: int = 0) -> LoadedModel:
    ort = _ort()
    chosen, note = providers_for(provider, ort.get_available_providers())
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns, tuple(chosen), threads)
    with _LOCK:
        session = _SESSIONS.get(key)
        if session is None:
            session = _new_session(ort, path, chosen, threads, card)
            _SESSIONS[key] = session
    model = LoadedModel(card, path, session, session.get_inputs()[0].name, chosen[0], note)
    check_against_card(model)
    return model


def available_cores() -> int:
    """Cores this process may run on (a container or ``taskset`` may allow fewer than the machine has)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _new_session(ort, path: Path, providers: list[str], threads: int, card: ModelCard):
    """Session options chosen from measurements (scripts/bench.py) on the ukis networks.

    - One operator thread per core: these are convolution networks whose operators
      parallelise well; more threads than cores only adds switching.
    - Operators run one after another (inter-op 1, sequential): the graphs are chains.
    - All graph optimisations (fusions, constant folding, layout changes): done once
      per session, and sessions are cached.
    - The CPU memory arena stays on: every call has the same shapes, so buffers are
      reused instead of allocated per batch (turning it off was slower, more so at
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
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as err:  # onnxruntime raises several private exception types
        text = str(err)
        hint = ("The file is not a valid ONNX model: reinstall it, or check that the path points "
                "at the .onnx file.")
        if "opset" in text.lower() or "version" in text.lower():
            hint = ("The model needs a newer onnxruntime than this one: upgrade onnxruntime "
                    "for QGIS's Python (Manage models… shows the command).")
        raise ModelError(f"Cannot load model '{card.id}' from {path}: {text.splitlines()[0][:300]}. {hint}") from err


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
        raise ModelError(f"Model '{card.id}' ({model.path.name}) does not match its card: {problem}. "
                         "Fix the card or use the model file it describes.")


def preprocess(card: ModelCard, data: np.ndarray, offset: float = 0.0, in_place: bool = False) -> np.ndarray:
    """Scale raw digital numbers as the card says. ``data`` is ``[bands, ...]`` in card order.
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
    if card.activation == "softmax":
        e = np.exp(out - out.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    if card.activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-out))
    return out


def run(model: LoadedModel, batch: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Cloud and shadow probability for a batch of preprocessed tiles (or pixels)."""
    card = model.card
    try:
        out = model.session.run(None, {model.input_name: batch})[card.output_index]
    except Exception as err:
        raise ModelError(f"Model '{card.id}' failed on a batch of shape {batch.shape}: "
                         f"{str(err).splitlines()[0][:300]}. Check that the card matches the model.") from err
    if out.shape[:1] != batch.shape[:1] or (not card.is_pixel_model and out.shape[2:] != batch.shape[2:]):
        raise ModelError(f"Model '{card.id}' returned shape {out.shape} for input {batch.shape}; "
                         "its card expects one output per input pixel. Fix the card or the model.")
    needed = max(card.cloud_channels + card.shadow_channels) + 1
    if out.shape[1] < needed:
        raise ModelError(f"Model '{card.id}' returned {out.shape[1]} channels; its card reads channel "
                         f"{needed - 1}. Fix the card or the model.")
    probs = activate(card, out)
    cloud = probs[:, list(card.cloud_channels)].sum(axis=1) if card.cloud_channels else None
    shadow = probs[:, list(card.shadow_channels)].sum(axis=1) if card.shadow_channels else None
    return cloud, shadow
