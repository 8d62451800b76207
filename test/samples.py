"""Paths of the real sample scene and installed models (made by ``make setup``)."""

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from cloud_mask_improver.core.runtime import home

SAMPLE = Path(__file__).resolve().parent / "data" / "sample"
L1C_STACK = SAMPLE / "s2_l1c_13band.tif"
SEED_STACK = SAMPLE / "s2_12band.tif"
PRODUCT_MASK = SAMPLE / "product_mask.tif"
ARRAYS = SAMPLE / "input_arrays.npz"


def require(*paths: Path) -> None:
    """The real data must be there: a missing file is a setup failure, not a skip."""
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        pytest.fail(f"Run 'make setup' first; missing: {', '.join(missing)}")


def model_file(model_id: str) -> Path:
    path = home.models_dir() / f"{model_id}.onnx"
    require(path)
    return path


def load_fetch_sample() -> ModuleType:
    """scripts/sample.py (what setup runs to make the sample), imported by path."""
    spec = importlib.util.spec_from_file_location("fetch_sample", SAMPLE.parents[2] / "scripts" / "sample.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
