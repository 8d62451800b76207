"""The bad-input matrix: every bad or odd input gets a clear answer.

Each case runs an algorithm as a user would (``processing.run``; a sample also
through ``qgis_process.bin`` in a fresh profile) and asserts exactly one of:
- a ``QgsProcessingException`` whose message names the problem and the fix
  (the listed words), with no traceback in it; or
- for inputs that are odd but valid, a correct result.
Either way no partial output and no temporary file or folder is left, and QGIS
keeps running (the last test runs a good case after all the bad ones).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx_models import conv1x1_model, write_card
from osgeo import gdal
from qgis.core import QgsProcessingException
from rasters import gdal_exceptions_fixture, read, write_raster  # noqa: F401  (fixture)
from reliability import (  # noqa: F401  (fixtures)
    TINY_BANDS,
    assert_tiny_mask,
    collect_qgis_objects_fixture,
    leftovers,
    system_tmp_fixture,
    tiny_model,
    tiny_scene,
)

# -- building inputs -----------------------------------------------------------------------


def s2(tmp: Path, scene=None, name: str = "s2.tif", **kw) -> str:
    """A 4-band raster named B02 B03 B04 B08 (what the tiny model reads)."""
    scene = tiny_scene(40, 40) if scene is None else scene
    kw.setdefault("descriptions", TINY_BANDS[: scene.shape[0]] if scene.shape[0] <= 4 else None)
    return write_raster(tmp / name, scene, **kw)


def out(tmp: Path, name: str = "mask.tif") -> str:
    folder = tmp / "out"
    folder.mkdir(exist_ok=True)
    return str(folder / name)


def improve(tmp: Path, raster: str | None = None, model: str | None = None, **extra) -> dict:
    """improvecloudmask with the tiny model as cloud and shadow model, no dilation."""
    model = model or str(tiny_model(tmp / "model"))
    params = {
        "S2_RASTER": raster or s2(tmp),
        "CLOUD_MODEL": model,
        "SHADOW_MODEL": model,
        "DILATION": 0,
        "MASK": out(tmp),
    }
    params.update(extra)
    return params


def probability(tmp: Path, values: np.ndarray, name: str, **kw) -> str:
    return write_raster(tmp / name, values.astype(np.float32), nodata=-1.0, **kw)


def shifted_model(tmp: Path) -> str:
    """A model whose input (6 bands) contradicts its card (4 bands)."""
    folder = tmp / "model"
    folder.mkdir()
    path = conv1x1_model(folder / "six.onnx", np.ones((3, 6)), np.zeros(3), tile=64)
    write_card(folder / "six.json", id="six-test")
    return str(path)


def model_with_card(tmp: Path, card_text: str | None = None, name: str = "tiny", **card) -> str:
    """The tiny model with a card written as given (raw text, or fields over the default)."""
    path = tiny_model(tmp / "model", name)
    if card_text is not None:
        path.with_suffix(".json").write_text(card_text)
    elif card:
        data = json.loads(path.with_suffix(".json").read_text())
        for key, value in card.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        path.with_suffix(".json").write_text(json.dumps(data))
    return str(path)


def random_bytes_model(tmp: Path) -> str:
    path = tiny_model(tmp / "model")
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    return str(path)


def opset_too_new(tmp: Path) -> str:
    """The tiny model declaring an opset no onnxruntime knows yet."""
    path = tiny_model(tmp / "model")
    proto = onnx.load(str(path))
    proto.opset_import[0].version = 40
    onnx.save(proto, str(path))
    return str(path)


def runtime_missing(monkeypatch) -> None:
    """``import onnxruntime`` fails, as in a QGIS whose Python lacks it."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)


def runtime_too_old(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", types.SimpleNamespace(__version__="1.10.0"))


# -- checking valid results ---------------------------------------------------------------


def square_in_the_mask(result, params, tmp):
    """The product mask's cloud square lands on the same ground, whatever its CRS."""
    want = np.zeros((60, 60), dtype=np.uint8)
    want[20:40, 10:30] = 1
    assert (read(params["MASK"]) != want).mean() < 0.02


def all_nodata(result, params, tmp):
    assert (read(params["MASK"]) == 255).all()
    for name in ("CLEAR_FRACTION", "CLOUD_FRACTION", "SHADOW_FRACTION"):
        assert result[name] == 0.0 and not math.isnan(result[name])


def nan_and_negative(result, params, tmp):
    scene = read(params["S2_RASTER"])
    mask = read(params["MASK"])
    bad = ~np.isfinite(scene).all(axis=0)
    assert (mask[bad] == 255).all()
    assert set(np.unique(mask[~bad])) <= {0, 1, 2}
    assert_tiny_mask(mask, np.nan_to_num(scene), ~bad)
    valid = (~bad).sum()
    assert abs(result["CLOUD_FRACTION"] - (mask == 1).sum() / valid) < 1e-12


def saturated(result, params, tmp):
    scene = read(params["S2_RASTER"])
    mask = read(params["MASK"])
    assert (mask[(scene == 65535).any(axis=0)] == 1).all()  # bright, valid: cloud
    assert_tiny_mask(mask, scene, np.ones(mask.shape, dtype=bool))


def one_pixel(result, params, tmp):
    scene = read(params["S2_RASTER"]).reshape(4, 1, 1)
    mask = read(params["MASK"]).reshape(1, 1)
    assert_tiny_mask(mask, scene, np.ones((1, 1), dtype=bool))
    assert sum(result[k] for k in ("CLEAR_FRACTION", "CLOUD_FRACTION", "SHADOW_FRACTION")) == 1.0


# -- the matrix ---------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    alg: str
    params: Callable[[Path], dict]
    error: tuple[str, ...] = ()  # words the message must hold; empty: a valid input
    check: Callable | None = None  # for valid inputs: check(result, params, tmp)
    env: Callable[[Path], dict] = field(default=lambda tmp: {})
    patch: Callable | None = None  # patch(monkeypatch): in-process environment change
    keep: tuple[str, ...] = ()  # output parameters that may exist afterwards (inputs)


def empty_home(tmp: Path) -> dict:
    (tmp / "empty-home").mkdir(exist_ok=True)
    return {"CLOUDMASK_HOME": str(tmp / "empty-home")}


def home_with_a_broken_card(tmp: Path) -> dict:
    """A data home whose models folder holds the tiny model and a card that is not JSON."""
    models = tmp / "home" / "models"
    tiny_model(models, "tiny")
    (models / "broken.json").write_text("{ not json")
    return {"CLOUDMASK_HOME": str(tmp / "home")}


def tiny_checked(result, params, tmp):
    scene = read(params["S2_RASTER"])
    assert_tiny_mask(read(params["MASK"]), scene, np.ones(scene.shape[1:], dtype=bool))


def other_crs_product(tmp: Path) -> dict:
    square = np.zeros((30, 30), dtype=np.uint8)
    square[10:20, 5:15] = 1  # 20 m pixels: rows 20-40, cols 10-30 of the 10 m raster
    native = write_raster(tmp / "pm20.tif", square, nodata=100, transform=(500000.0, 20.0, 0.0, 5000000.0, 0.0, -20.0))
    geographic = str(tmp / "pm_wgs84.tif")
    gdal.Warp(geographic, native, dstSRS="EPSG:4326", resampleAlg="near")
    return improve(tmp, s2(tmp, tiny_scene(60, 60)), PRODUCT_MASK=geographic, CLOUD_THR=1.0, SHADOW_THR=1.0)


def float_scene(tmp: Path) -> dict:
    scene = tiny_scene(50, 50, seed=3).astype(np.float32)
    scene[0, 5:10, 5:10] = np.nan
    scene[2, 20, :] = np.inf
    scene[1, 30:35, 30:35] = -50.0  # negative values (L2A offset products have them): valid
    return improve(tmp, s2(tmp, scene, nodata=None))


def saturated_scene(tmp: Path) -> dict:
    scene = tiny_scene(40, 40, seed=4)
    scene[:, 10:15, 10:15] = 65535
    scene[3, 30, 30] = 65535
    return improve(tmp, s2(tmp, scene))


def far_product(tmp: Path) -> dict:
    far = write_raster(
        tmp / "far.tif", np.zeros((20, 20), dtype=np.uint8), transform=(700000.0, 10.0, 0.0, 6000000.0, 0.0, -10.0)
    )
    return improve(tmp, PRODUCT_MASK=far)


def rgb(tmp: Path) -> dict:
    picture = np.random.default_rng(0).integers(0, 255, size=(3, 40, 40), dtype=np.uint8)
    raster = write_raster(tmp / "rgb.tif", picture, descriptions=["Red", "Green", "Blue"], nodata=None)
    return improve(tmp, raster)


def grids_differ(tmp: Path) -> dict:
    cloud = probability(tmp, np.zeros((20, 20)), "c.tif")
    shadow = probability(tmp, np.zeros((20, 21)), "s.tif")
    return {"CLOUD_PROBABILITY": cloud, "SHADOW_PROBABILITY": shadow, "MERGED_CLOUD_MASK": out(tmp)}


def same_as_input(tmp: Path) -> dict:
    raster = s2(tmp)
    return improve(tmp, raster, MASK=raster)


def same_as_product(tmp: Path) -> dict:
    product = write_raster(tmp / "pm.tif", np.zeros((40, 40), dtype=np.uint8))
    return improve(tmp, PRODUCT_MASK=product, MASK=product)


def not_a_raster(tmp: Path) -> dict:
    (tmp / "notes.tif").write_text("not a raster")
    return improve(tmp, str(tmp / "notes.tif"))


def under_a_file(tmp: Path) -> dict:
    (tmp / "file.txt").write_text("x")
    return improve(tmp, MASK=str(tmp / "file.txt" / "mask.tif"))


# A read-only folder: the tests run as root, for whom permission bits do not stop
# writes, and chattr/read-only mounts are not available; /proc refuses new files
# to everyone, which is what a read-only folder does.
READ_ONLY_FOLDER = "/proc"

CASES = [
    Case("rgb-8bit", "improvecloudmask", rgb, ("8-bit", "uint16")),
    Case(
        "three-bands",
        "improvecloudmask",
        lambda t: improve(t, s2(t, tiny_scene(40, 40)[:3], descriptions=None)),
        ("3 bands", "BANDS"),
    ),
    Case(
        "bands-unknown-name",
        "improvecloudmask",
        lambda t: improve(t, BANDS="B02,B03,B04,XX"),
        ("Unknown band name 'XX'", "B8A"),
    ),
    Case(
        "bands-duplicate",
        "improvecloudmask",
        lambda t: improve(t, BANDS="B02,B02,B04,B08"),
        ("B02 is listed twice", "its own"),
    ),
    Case(
        "bands-too-few",
        "improvecloudmask",
        lambda t: improve(t, BANDS="B02,B03"),
        ("names 2 bands but the raster has 4", "one Sentinel-2 name per raster band"),
    ),
    Case(
        "band-missing-for-model",
        "improvecloudmask",
        lambda t: improve(t, s2(t, tiny_scene(40, 40)[:3]), BANDS="B02,B03,B04"),
        ("needs band B08", "Choose a model"),
    ),
    Case(
        "no-crs",
        "improvecloudmask",
        lambda t: improve(t, s2(t, epsg=None)),
        ("no coordinate reference system", "Assign Projection"),
    ),
    Case(
        "no-geotransform",
        "improvecloudmask",
        lambda t: improve(t, s2(t, epsg=None, transform=None)),
        ("no georeference", "Assign"),
    ),
    Case(
        "rotated-grid",
        "improvecloudmask",
        lambda t: improve(t, s2(t, transform=(500000.0, 9.9, 1.0, 5000000.0, 1.0, -9.9))),
        ("not north-up", "rotated", "gdalwarp"),
    ),
    Case(
        "rows-from-south-to-north",
        "improvecloudmask",
        lambda t: improve(t, s2(t, transform=(500000.0, 10.0, 0.0, 4999600.0, 0.0, 10.0))),
        ("not north-up", "south to north", "Warp"),
    ),
    Case(
        "merge-probabilities-not-north-up",
        "mergecloudmasks",
        lambda t: {
            "CLOUD_PROBABILITY": probability(
                t, np.zeros((20, 20)), "c.tif", transform=(500000.0, 10.0, 0.0, 4999800.0, 0.0, 10.0)
            ),
            "MERGED_CLOUD_MASK": out(t),
        },
        ("not north-up", "Warp"),
    ),
    Case(
        "product-mask-elsewhere",
        "improvecloudmask",
        far_product,
        ("does not overlap", "product mask of the same scene"),
    ),
    Case("product-mask-other-crs-and-resolution", "improvecloudmask", other_crs_product, check=square_in_the_mask),
    Case(
        "all-nodata",
        "improvecloudmask",
        lambda t: improve(t, s2(t, np.zeros((4, 30, 30), np.uint16))),
        check=all_nodata,
    ),
    Case("float-nan-inf-negative", "improvecloudmask", float_scene, check=nan_and_negative),
    Case(
        "float-reflectance-not-digital-numbers",
        "improvecloudmask",
        lambda t: improve(t, s2(t, tiny_scene(40, 40).astype(np.float32) / 10000, nodata=None)),
        ("reflectance", "digital numbers", "Multiply the bands by 10000"),
    ),
    Case(
        "float-all-nan",
        "improvecloudmask",
        lambda t: improve(t, s2(t, np.full((4, 20, 20), np.nan, np.float32), nodata=None)),
        check=all_nodata,
    ),
    Case("saturated", "improvecloudmask", saturated_scene, check=saturated),
    Case("one-pixel", "improvecloudmask", lambda t: improve(t, s2(t, tiny_scene(1, 1))), check=one_pixel),
    Case(
        "random-bytes-model",
        "cloudprobability",
        lambda t: {"SENTINEL_RASTER": s2(t), "MODEL_PATH": random_bytes_model(t), "CLOUD_PROBABILITY": out(t, "p.tif")},
        ("not a valid ONNX model", "reinstall"),
    ),
    Case(
        "model-contradicts-card",
        "improvecloudmask",
        lambda t: improve(t, model=shifted_model(t)),
        ("does not match its card", "[N, 4, H, W]", "Fix the card"),
    ),
    Case(
        "card-not-json",
        "improvecloudmask",
        lambda t: improve(t, model=model_with_card(t, "{ not json")),
        ("Cannot read model card", "Fix or replace the card"),
    ),
    Case(
        "broken-card-beside-installed-models",
        "improvecloudmask",
        lambda t: improve(t, model="tiny-test"),
        check=tiny_checked,
        env=home_with_a_broken_card,
    ),
    Case(
        "broken-card-asked-for",
        "improvecloudmask",
        lambda t: improve(t, model="broken"),
        ("Unknown model 'broken'", "cannot be used", "broken.json", "Fix or replace the card"),
        env=home_with_a_broken_card,
    ),
    Case(
        "card-lacks-bands",
        "improvecloudmask",
        lambda t: improve(t, model=model_with_card(t, bands=None)),
        ("lacks the field 'bands'", "Fix or replace the card"),
    ),
    Case(
        "card-field-of-wrong-type",
        "improvecloudmask",
        lambda t: improve(t, model=model_with_card(t, tiling={"scheme": "mirror-tukey", "tile": "big"})),
        ("wrong type", "Fix or replace the card"),
    ),
    Case(
        "card-bad-values",
        "improvecloudmask",
        lambda t: improve(t, model=model_with_card(t, bands=["B02", "B99"], level="L3")),
        ("level 'L3'", "B99", "use Sentinel-2 names"),
    ),
    Case(
        "card-sha256-mismatch",
        "improvecloudmask",
        lambda t: improve(t, model=model_with_card(t, sha256="0" * 64)),
        ("sha256 differs", "Reinstall the model"),
    ),
    Case(
        "model-path-missing",
        "improvecloudmask",
        lambda t: improve(t, model=str(t / "nowhere" / "m.onnx")),
        ("does not exist", "Check the path"),
    ),
    Case(
        "model-id-unknown",
        "improvecloudmask",
        lambda t: improve(t, model="no-such-model"),
        ("Unknown model 'no-such-model'", "Known model ids", "ukis-6b-l2a"),
    ),
    Case(
        "models-folder-empty",
        "improvecloudmask",
        lambda t: {"S2_RASTER": s2(t), "MASK": out(t)},
        ("No cloud model is installed", "make setup", "Manage models"),
        env=empty_home,
    ),
    Case(
        "shadow-model-without-shadow",
        "improvecloudmask",
        lambda t: improve(
            t, SHADOW_MODEL=model_with_card(t, name="cloudonly", output={"activation": "softmax", "cloud": [1]})
        ),
        ("gives no shadow probability", "choose a shadow model"),
    ),
    Case(
        "cloud-threshold-above-1",
        "improvecloudmask",
        lambda t: improve(t, CLOUD_THR=1.5),
        ("CLOUD_THR", "1.5", "between 0 and 1"),
    ),
    Case(
        "shadow-threshold-negative",
        "improvecloudmask",
        lambda t: improve(t, SHADOW_THR=-0.2),
        ("SHADOW_THR", "-0.2", "between 0 and 1"),
    ),
    Case(
        "merge-threshold-above-1",
        "mergecloudmasks",
        lambda t: {
            "CLOUD_PROBABILITY": probability(t, np.zeros((20, 20)), "c.tif"),
            "CLOUD_PROB_THRESHOLD": 2,
            "MERGED_CLOUD_MASK": out(t),
        },
        ("CLOUD_PROB_THRESHOLD", "between 0 and 1"),
    ),
    Case("negative-dilation", "improvecloudmask", lambda t: improve(t, DILATION=-1), ("DILATION", "-1", "0 or more")),
    Case("negative-resolution", "improvecloudmask", lambda t: improve(t, RESOLUTION=-10), ("RESOLUTION", "0 or more")),
    Case(
        "probabilities-on-different-grids",
        "mergecloudmasks",
        grids_differ,
        ("not on the same grid", "same Sentinel-2 raster"),
    ),
    Case("input-not-a-raster", "improvecloudmask", not_a_raster, ("S2_RASTER", "cannot be opened")),
    Case(
        "output-folder-missing",
        "improvecloudmask",
        lambda t: improve(t, MASK=str(t / "nowhere" / "m.tif")),
        ("does not exist", "Create it"),
    ),
    Case("output-folder-is-a-file", "improvecloudmask", under_a_file, ("is a file", "choose another output")),
    Case(
        "output-folder-read-only",
        "improvecloudmask",
        lambda t: improve(t, MASK=f"{READ_ONLY_FOLDER}/cloudmask-test-{os.getpid()}.tif"),
        ("not writable", "output path you can write to"),
    ),
    Case(
        "output-is-the-input",
        "improvecloudmask",
        same_as_input,
        ("is also an input", "different output"),
        keep=("MASK",),
    ),
    Case("output-is-the-product-mask", "improvecloudmask", same_as_product, ("is also an input",), keep=("MASK",)),
    Case(
        "two-outputs-on-one-path",
        "improvecloudmask",
        lambda t: improve(t, CLOUD_PROBABILITY=out(t)),
        ("Two outputs are the same file", "its own path"),
    ),
    Case(
        "onnxruntime-missing",
        "improvecloudmask",
        improve,
        ("onnxruntime is not installed", "pip install", "--target"),
        patch=runtime_missing,
    ),
    Case(
        "onnxruntime-too-old",
        "improvecloudmask",
        improve,
        ("onnxruntime 1.10.0 is too old", "pip install"),
        patch=runtime_too_old,
    ),
    Case(
        "onnxruntime-older-than-the-model-opset",
        "improvecloudmask",
        lambda t: improve(t, model=opset_too_new(t)),
        ("newer onnxruntime", "pip install"),
    ),
]

OUTPUT_PARAMETERS = {
    "improvecloudmask": ("MASK", "CLOUD_PROBABILITY", "SHADOW_PROBABILITY"),
    "cloudprobability": ("CLOUD_PROBABILITY",),
    "mergecloudmasks": ("MERGED_CLOUD_MASK",),
}


def output_files(alg: str, params: dict, keep=()) -> list[Path]:
    return [Path(v) for k, v in params.items() if k in OUTPUT_PARAMETERS[alg] and k not in keep]


def no_traceback(message: str) -> None:
    assert "Traceback" not in message and 'File "' not in message, message


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, gdal_exceptions, provider, tmp_path, system_tmp, monkeypatch):
    """Each case with GDAL's exceptions off (QGIS 3.22) and on (QGIS >= 3.40): same answer."""
    import processing

    params = case.params(tmp_path)
    for key, value in case.env(tmp_path).items():
        monkeypatch.setenv(key, value)
    if case.patch:
        case.patch(monkeypatch)
    before = {p: p.read_bytes() for p in output_files(case.alg, params) if p.is_file()}
    if case.error:
        with pytest.raises(QgsProcessingException) as err:
            processing.run(f"cloudmask:{case.alg}", params)
        message = str(err.value)
        # `pytest -s` prints the matrix for the record.
        print(f"\nMATRIX | {case.id} | {' / '.join(message.splitlines())}")
        no_traceback(message)
        for word in case.error:
            assert word in message, message
        for path in output_files(case.alg, params, case.keep):
            assert not path.exists(), f"{path} was written"
    else:
        result = processing.run(f"cloudmask:{case.alg}", params)
        case.check(result, params, tmp_path)
        print(f"\nMATRIX | {case.id} | valid: {result}")
    for path, content in before.items():
        assert path.read_bytes() == content, f"the input {path} was changed"
    assert not leftovers(tmp_path, system_tmp)


def test_qgis_keeps_running_after_the_bad_inputs(provider, tmp_path):
    """A good run after the whole matrix (same process) still gives the right mask."""
    import processing

    scene = tiny_scene(40, 40, seed=9)
    params = improve(tmp_path, s2(tmp_path, scene))
    processing.run("cloudmask:improvecloudmask", params)
    assert_tiny_mask(read(params["MASK"]), scene, np.ones((40, 40), dtype=bool))


# -- the same answers through qgis_process -------------------------------------------------

QGIS_PROCESS_SAMPLE = [
    "rgb-8bit",
    "cloud-threshold-above-1",
    "model-path-missing",
    "output-is-the-input",
    "models-folder-empty",
    "card-sha256-mismatch",
]


@pytest.fixture(scope="module")
def qgis_process(plugin_dir, tmp_path_factory):
    """qgis_process.bin with the plugin enabled in a fresh profile."""
    exe = shutil.which("qgis_process.bin") or shutil.which("qgis_process")
    profile = tmp_path_factory.mktemp("qgis-profile")
    env = dict(
        os.environ, QGIS_PLUGINPATH=str(plugin_dir), QT_QPA_PLATFORM="offscreen", QGIS_CUSTOM_CONFIG_PATH=str(profile)
    )
    subprocess.run([exe, "plugins", "enable", "cloud_mask_improver"], env=env, capture_output=True, check=True)

    def run(alg: str, params: dict, extra_env: dict) -> subprocess.CompletedProcess:
        args = [f"{k}={v}" for k, v in params.items()]
        return subprocess.run(
            [exe, "run", f"cloudmask:{alg}", "--", *args],
            check=False,
            env={**env, **extra_env},
            capture_output=True,
            text=True,
            timeout=300,
        )

    return run


def check_refused(done: subprocess.CompletedProcess, words, alg, params, keep=()) -> None:
    text = done.stdout + done.stderr
    assert done.returncode != 0, text[-2000:]
    no_traceback(text)
    for word in words:
        assert word in text, text[-2000:]
    for path in output_files(alg, params, keep):
        assert not path.exists()


@pytest.mark.parametrize("case", [c for c in CASES if c.id in QGIS_PROCESS_SAMPLE], ids=QGIS_PROCESS_SAMPLE)
def test_bad_input_through_qgis_process(case, qgis_process, tmp_path):
    params = case.params(tmp_path)
    before = {p: p.read_bytes() for p in output_files(case.alg, params) if p.is_file()}
    done = qgis_process(case.alg, params, case.env(tmp_path))
    check_refused(done, case.error, case.alg, params, case.keep)
    for path, content in before.items():
        assert path.read_bytes() == content
    assert not leftovers(tmp_path)


@pytest.mark.parametrize(
    "version, words",
    [
        (None, ("onnxruntime is not installed", "pip install")),
        ("1.10.0", ("onnxruntime 1.10.0 is too old", "pip install")),
    ],
)
def test_onnxruntime_missing_or_old_through_qgis_process(qgis_process, tmp_path, version, words):
    """A stand-in ``onnxruntime`` package first on the path.

    One that cannot be imported, or one that reports an old version."""
    fake = tmp_path / "fake" / "onnxruntime"
    fake.mkdir(parents=True)
    body = f"__version__ = {version!r}\n" if version else "raise ImportError('simulated: no onnxruntime')\n"
    (fake / "__init__.py").write_text(body)
    params = improve(tmp_path)
    # No onnxruntime in the data home: the plugin would put its own first on the path.
    done = qgis_process("improvecloudmask", params, {"PYTHONPATH": str(fake.parent), **empty_home(tmp_path)})
    check_refused(done, words, "improvecloudmask", params)
