"""Shared pieces of the reliability tests.

A tiny model whose exact output is known, the registered provider, and the checks that
nothing was left behind."""

from __future__ import annotations

import gc
import tempfile
from pathlib import Path

import numpy as np
import pytest
from onnx_models import conv1x1_model, write_card

TINY_BANDS = ["B02", "B03", "B04", "B08"]
# Per-pixel 4-band -> 3-class logits (clear, cloud, shadow): bright pixels are cloud,
# dark ones shadow, so random scenes give all three classes.
TINY_WEIGHTS = np.array([[0.0] * 4, [10.0] * 4, [-10.0] * 4])
TINY_BIAS = np.array([0.0, -11.0, 5.0])


def tiny_model(folder: Path, name: str = "tiny", **card) -> Path:
    """A 4-band L2A cloud + shadow model (64 px tiles) and its card, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = conv1x1_model(folder / f"{name}.onnx", TINY_WEIGHTS, TINY_BIAS, tile=64)
    write_card(folder / f"{name}.json", id=card.pop("id", f"{name}-test"), **card)
    return path


def tiny_probabilities(scene: np.ndarray) -> np.ndarray:
    """What the tiny model gives for a ``[4, H, W]`` scene of digital numbers: [3, H, W]."""
    x = scene.astype(np.float64) * 1e-4
    logits = np.einsum("kc,chw->khw", TINY_WEIGHTS, x) + TINY_BIAS[:, None, None]
    e = np.exp(logits - logits.max(axis=0))
    return e / e.sum(axis=0)


def assert_tiny_mask(mask: np.ndarray, scene: np.ndarray, valid: np.ndarray, threshold: float = 0.5) -> None:
    """``mask`` is what the tiny model gives without dilation.

    Pixels within float32 rounding of the threshold may go either way."""
    p = tiny_probabilities(scene)
    want = np.where(p[1] > threshold, 1, np.where(p[2] > threshold, 2, 0)).astype(np.uint8)
    want[~valid] = 255
    borderline = (np.abs(p[1] - threshold) < 1e-4) | (np.abs(p[2] - threshold) < 1e-4)
    wrong = (mask != want) & ~(borderline & valid)
    assert not wrong.any(), f"{wrong.sum()} pixels differ from the tiny model's mask"


def tiny_scene(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(1, 4000, size=(4, rows, cols), dtype=np.uint16)


# Fixtures are named by ``name=`` so that test modules import them without shadowing
# the argument name.
@pytest.fixture(autouse=True, name="collect_qgis_objects")
def collect_qgis_objects_fixture():
    """Collect the cycle a refused run leaves while QGIS is alive.

    A refused run leaves a cycle (exception -> traceback -> frames -> the QGIS context
    and algorithm). Collected after QGIS exits, the context's destructor crashes the
    interpreter."""
    yield
    gc.collect()


@pytest.fixture(name="system_tmp")
def system_tmp_fixture(tmp_path, monkeypatch) -> Path:
    """A private system temp dir, so leftover ``cloudmask-*`` folders are ours to count.

    The real one is shared with other processes."""
    folder = tmp_path / "system-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def leftovers(*folders: Path) -> list[str]:
    """Temporary files or folders a run may have left.

    Partial outputs beside the destinations and ``cloudmask-*`` work folders."""
    found = []
    for folder in folders:
        if folder.is_dir():
            found += [str(p) for p in folder.rglob(".*partial-*")]
            found += [str(p) for p in folder.rglob("cloudmask-*")]
    return found
