"""The algorithms as users run them: toolbox (processing.run), the modeler model, and qgis_process.

Their outputs; and clear errors on bad input."""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from log_feedback import LogFeedback
from osgeo import gdal
from qgis.core import QgsProcessingException
from rasters import random_scene, read, write_raster
from samples import L1C_STACK, PRODUCT_MASK, model_file, require

SAMPLE_PARAMS = {"CLOUD_MODEL": "ukis-6b-l1c", "SHADOW_MODEL": "ukis-6b-l1c", "CLOUD_THR": 0.5, "SHADOW_THR": 0.5}


def run(alg, params):
    import processing

    return processing.run(f"cloudmask:{alg}", params)


def test_provider_lists_the_contract_algorithms(provider):
    ids = {a.id() for a in provider.algorithms()}
    assert {
        "cloudmask:improvecloudmask",
        "cloudmask:improvecloudmaskensemble",
        "cloudmask:cloudprobability",
        "cloudmask:ensemblecloudprobability",
        "cloudmask:shadowprobability",
        "cloudmask:mergecloudmasks",
        "cloudmask:improvecloudmaskmodel",
    } <= ids
    for alg in provider.algorithms():
        assert alg.shortHelpString()


def test_the_merge_parameters_default_to_the_merge_settings(provider):
    """Every algorithm that merges offers the defaults of ``MergeSettings`` (declared once, in choices.DEFAULTS).

    And the improve algorithms offer exactly the declared optional outputs."""
    from cloud_mask_improver.core.choices import OUTPUT_MODES, PRODUCT_KINDS, optional_outputs
    from cloud_mask_improver.core.merge import MergeSettings

    settings = MergeSettings()
    merging = [a for a in provider.algorithms() if a.parameterDefinition("DILATION") is not None]
    assert {a.name() for a in merging} >= {
        "improvecloudmask",
        "improvecloudmaskensemble",
        "mergecloudmasks",
        "improvecloudmaskbatch",
    }
    for alg in merging:
        defaults = {p.name(): p.defaultValue() for p in alg.parameterDefinitions()}
        assert defaults["DILATION"] == settings.dilation and defaults["MIN_AREA"] == settings.min_area, alg.name()
        assert PRODUCT_KINDS[defaults["PRODUCT_MASK_KIND"]] == settings.product_kind
        assert OUTPUT_MODES[defaults["OUTPUT_MODE"]] == settings.output_mode
    for name, ensemble in (("improvecloudmask", False), ("improvecloudmaskensemble", True)):
        alg = provider.algorithm(name)
        optional = [p.name() for p in alg.destinationParameterDefinitions() if p.name() != "MASK"]
        assert optional == [o.name for o in optional_outputs(ensemble)]


@pytest.fixture(scope="module")
def toolbox_mask(provider, tmp_path_factory):
    require(L1C_STACK, PRODUCT_MASK)
    model_file("ukis-6b-l1c")
    out = tmp_path_factory.mktemp("toolbox") / "mask.tif"
    result = run(
        "improvecloudmask",
        {"S2_RASTER": str(L1C_STACK), "PRODUCT_MASK": str(PRODUCT_MASK), "MASK": str(out), **SAMPLE_PARAMS},
    )
    return out, result


def test_mask_is_categorical_with_nodata_colours_and_names(toolbox_mask):
    out, result = toolbox_mask
    ds = gdal.Open(str(out))
    band = ds.GetRasterBand(1)
    assert band.GetNoDataValue() == 255
    assert band.GetRasterColorTable() is not None
    names = band.GetRasterCategoryNames()
    assert names[0] == "clear" and names[1] == "cloud" and names[2] == "cloud shadow"
    values = set(np.unique(band.ReadAsArray()))
    assert values <= {0, 1, 2, 255} and {0, 1, 2} <= values
    total = result["CLEAR_FRACTION"] + result["CLOUD_FRACTION"] + result["SHADOW_FRACTION"]
    assert abs(total - 1) < 1e-9 and 0.05 < result["CLOUD_FRACTION"] < 0.95
    assert ds.GetGeoTransform() == gdal.Open(str(L1C_STACK)).GetGeoTransform()


def test_modeler_model_gives_the_same_mask(provider, tmp_path):
    """FarmVibes.AI's workflow as a chain of the probability ops, which work on the raster's own grid.

    The chain's mask is the algorithm's mask at RESOLUTION 0."""
    out = tmp_path / "model_mask.tif"
    run(
        "improvecloudmaskmodel",
        {"S2_RASTER": str(L1C_STACK), "PRODUCT_MASK": str(PRODUCT_MASK), "merge:MASK": str(out), **SAMPLE_PARAMS},
    )
    native = tmp_path / "mask.tif"
    run(
        "improvecloudmask",
        {
            "S2_RASTER": str(L1C_STACK),
            "PRODUCT_MASK": str(PRODUCT_MASK),
            "RESOLUTION": 0,
            "MASK": str(native),
            **SAMPLE_PARAMS,
        },
    )
    assert np.array_equal(read(out), read(native))


def test_qgis_process_gives_the_same_mask(plugin_dir, toolbox_mask, tmp_path):
    exe = shutil.which("qgis_process.bin") or shutil.which("qgis_process")
    # A fresh QGIS profile, so enabling the plugin is a real first enable.
    env = dict(
        os.environ,
        QGIS_PLUGINPATH=str(plugin_dir),
        QT_QPA_PLATFORM="offscreen",
        QGIS_CUSTOM_CONFIG_PATH=str(tmp_path / "profile"),
    )
    subprocess.run([exe, "plugins", "enable", "cloud_mask_improver"], env=env, capture_output=True, check=True)
    out = tmp_path / "qp_mask.tif"
    args = [f"{k}={v}" for k, v in SAMPLE_PARAMS.items()]
    done = subprocess.run(
        [
            exe,
            "run",
            "cloudmask:improvecloudmask",
            "--json",
            "--",
            f"S2_RASTER={L1C_STACK}",
            f"PRODUCT_MASK={PRODUCT_MASK}",
            f"MASK={out}",
            *args,
        ],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads(done.stdout[done.stdout.index("{") :])["results"]
    assert np.array_equal(read(out), read(toolbox_mask[0]))
    assert abs(results["CLOUD_FRACTION"] - toolbox_mask[1]["CLOUD_FRACTION"]) < 1e-12


def test_ensemble_writes_mean_and_uncertainty(provider, tmp_path):
    model_file("ukis-4b-l1c")
    out = {k: str(tmp_path / f"{k}.tif") for k in ("MASK", "CLOUD_PROBABILITY", "CLOUD_UNCERTAINTY")}
    run(
        "improvecloudmaskensemble",
        {
            "S2_RASTER": str(L1C_STACK),
            "CLOUD_MODELS": "ukis-6b-l1c,ukis-4b-l1c",
            "SHADOW_MODEL": "ukis-6b-l1c",
            "RESOLUTION": 0,
            **out,
        },
    )
    singles = []
    for model in ("ukis-6b-l1c", "ukis-4b-l1c"):
        path = str(tmp_path / f"{model}.tif")
        run("cloudprobability", {"SENTINEL_RASTER": str(L1C_STACK), "MODEL_PATH": model, "CLOUD_PROBABILITY": path})
        singles.append(read(path))
    assert np.abs(read(out["CLOUD_PROBABILITY"]) - np.mean(singles, axis=0)).max() < 1e-5
    assert np.abs(read(out["CLOUD_UNCERTAINTY"]) - np.std(singles, axis=0)).max() < 1e-5


def l2a_crop(tmp_path) -> str:
    """The real scene's top-left 300 px, tagged as an L2A product."""
    require(L1C_STACK)
    ds = gdal.Open(str(L1C_STACK))
    names = [ds.GetRasterBand(b + 1).GetDescription() for b in range(ds.RasterCount)]
    return write_raster(
        tmp_path / "l2a.tif",
        ds.ReadAsArray(0, 0, 300, 300),
        descriptions=names,
        metadata={"PROCESSING_LEVEL": "Level-2A"},
    )


def test_default_model_follows_the_processing_level(provider, tmp_path):
    """No model given: the ensemble is every installed cloud model of the raster's level (here L2A).

    Not every installed cloud model."""
    from cloud_mask_improver.core.modelstore import catalogue

    raster = l2a_crop(tmp_path)
    installed = [c for c in catalogue.installed() if c.has_cloud]
    l2a = [c.id for c in installed if c.level == "L2A"]
    assert l2a and len(l2a) < len(installed), "needs installed cloud models of both levels"
    out = run("ensemblecloudprobability", {"SENTINEL_RASTER": raster, "CLOUD_PROBABILITY": str(tmp_path / "d.tif")})
    reference = run(
        "ensemblecloudprobability",
        {"SENTINEL_RASTER": raster, "MODEL_PATHS": ",".join(l2a), "CLOUD_PROBABILITY": str(tmp_path / "ref.tif")},
    )
    assert np.array_equal(read(out["CLOUD_PROBABILITY"]), read(reference["CLOUD_PROBABILITY"]))
    single = run("cloudprobability", {"SENTINEL_RASTER": raster, "CLOUD_PROBABILITY": str(tmp_path / "s.tif")})
    best = run(
        "cloudprobability",
        {"SENTINEL_RASTER": raster, "MODEL_PATH": l2a[0], "CLOUD_PROBABILITY": str(tmp_path / "b.tif")},
    )
    assert np.array_equal(read(single["CLOUD_PROBABILITY"]), read(best["CLOUD_PROBABILITY"]))


def test_an_internal_error_is_reported_as_a_bug_with_its_traceback_in_the_log(provider, tmp_path, monkeypatch):
    """Only CloudMaskError is a user's input error; a ValueError from inside the engine is a bug.

    For a bug: a short message for the user, the whole traceback in the message log."""
    from qgis.core import QgsApplication

    from cloud_mask_improver.core import windowed_merge

    def broken(*args, **kwargs):
        raise ValueError("index 3 is out of bounds for axis 0")

    monkeypatch.setattr(windowed_merge.merge, "finish", broken)
    logged = []
    log = QgsApplication.messageLog()
    log.messageReceived.connect(lambda message, tag, level: logged.append(message))
    try:
        with pytest.raises(QgsProcessingException) as err:
            run(
                "mergecloudmasks",
                {
                    "CLOUD_PROBABILITY": probability_raster(tmp_path / "c.tif", np.zeros((20, 20))),
                    "MERGED_CLOUD_MASK": str(tmp_path / "m.tif"),
                },
            )
    finally:
        log.messageReceived.disconnect()
    assert "Unexpected error" in str(err.value) and "Traceback" not in str(err.value)
    assert any("Traceback" in m and "index 3 is out of bounds" in m for m in logged)


# -- merge -----------------------------------------------------------------------------


def probability_raster(path, values, **kw):
    return write_raster(path, values.astype(np.float32), nodata=-1.0, **kw)


def test_product_mask_in_another_crs_and_resolution_lands_on_the_right_pixels(provider, tmp_path):
    zeros = np.zeros((200, 200), dtype=np.float32)
    cloud = probability_raster(tmp_path / "c.tif", zeros)
    # The product mask: a cloud square at 20 m in the same CRS, then warped to WGS 84.
    square = np.zeros((100, 100), dtype=np.uint8)
    square[20:50, 30:70] = 1
    native = write_raster(
        tmp_path / "pm20.tif", square, nodata=100, transform=(500000.0, 20.0, 0.0, 5000000.0, 0.0, -20.0)
    )
    geographic = str(tmp_path / "pm_wgs84.tif")
    gdal.Warp(geographic, native, dstSRS="EPSG:4326", resampleAlg="near")
    for product, tolerance in ((native, 0), (geographic, 0.01)):
        out = tmp_path / "m.tif"
        run(
            "mergecloudmasks",
            {"CLOUD_PROBABILITY": cloud, "PRODUCT_MASK": product, "DILATION": 0, "MERGED_CLOUD_MASK": str(out)},
        )
        want = np.zeros((200, 200), dtype=np.uint8)
        want[40:100, 60:140] = 1
        assert (read(out) != want).mean() <= tolerance


def test_merge_keeps_nodata_out_of_the_clouds(provider, tmp_path):
    values = np.full((50, 50), 0.9, dtype=np.float32)
    values[:, :10] = -1
    cloud = probability_raster(tmp_path / "c.tif", values)
    out = tmp_path / "m.tif"
    result = run("mergecloudmasks", {"CLOUD_PROBABILITY": cloud, "MERGED_CLOUD_MASK": str(out)})
    mask = read(out)
    assert (mask[:, :10] == 255).all() and (mask[:, 10:] == 1).all()
    assert result["CLOUD_FRACTION"] == 1.0


def test_rasters_given_in_gdal_syntax_are_read(provider, tmp_path):
    """A tif inside a zip (/vsizip/) and a GeoPackage raster (GPKG:file:table) are accepted.

    GDAL reads them; QGIS 3.22 loads neither from a string, and its check would refuse them
    as unreadable."""
    import zipfile

    values = np.zeros((40, 40), dtype=np.float32)
    values[10:20, 10:20] = 0.9
    cloud = probability_raster(tmp_path / "c.tif", values)
    with zipfile.ZipFile(tmp_path / "c.zip", "w") as archive:
        archive.write(cloud, "scene/c.tif")
    product = np.zeros((40, 40), dtype=np.uint8)
    product[30:, 30:] = 1
    plain = write_raster(tmp_path / "p.tif", product, nodata=None)
    gdal.Translate(str(tmp_path / "p.gpkg"), plain, format="GPKG", creationOptions=["RASTER_TABLE=mask"])
    common = {"DILATION": 0, "PRODUCT_MASK_KIND": 0}
    want = run(
        "mergecloudmasks",
        {**common, "CLOUD_PROBABILITY": cloud, "PRODUCT_MASK": plain, "MERGED_CLOUD_MASK": str(tmp_path / "want.tif")},
    )
    got = run(
        "mergecloudmasks",
        {
            **common,
            "CLOUD_PROBABILITY": f"/vsizip/{tmp_path}/c.zip/scene/c.tif",
            "PRODUCT_MASK": f"GPKG:{tmp_path}/p.gpkg:mask",
            "MERGED_CLOUD_MASK": str(tmp_path / "got.tif"),
        },
    )
    assert np.array_equal(read(got["MERGED_CLOUD_MASK"]), read(want["MERGED_CLOUD_MASK"]))
    assert got["CLOUD_FRACTION"] == want["CLOUD_FRACTION"] > 0.1


# -- bad input -------------------------------------------------------------------------


def expect_error(alg, params, *words):
    with pytest.raises(QgsProcessingException) as err:
        run(alg, params)
    message = str(err.value)
    for word in words:
        assert word in message, message
    return message


def test_missing_band_is_named(provider, tmp_path):
    raster = write_raster(
        tmp_path / "rgbn.tif", random_scene(40, 40, bands=4), descriptions=["B02", "B03", "B04", "B08"]
    )
    out = tmp_path / "m.tif"
    expect_error(
        "improvecloudmask", {"S2_RASTER": raster, "CLOUD_MODEL": "ukis-6b-l1c", "MASK": str(out)}, "B11", "B12"
    )
    assert not out.exists()


def test_unmapped_band_count_asks_for_the_band_list(provider, tmp_path):
    raster = write_raster(tmp_path / "five.tif", random_scene(30, 30, bands=5))
    expect_error("cloudprobability", {"SENTINEL_RASTER": raster, "CLOUD_PROBABILITY": str(tmp_path / "p.tif")}, "BANDS")


def test_missing_model_file(provider, tmp_path):
    raster = write_raster(tmp_path / "s2.tif", random_scene(30, 30))
    expect_error(
        "cloudprobability",
        {
            "SENTINEL_RASTER": raster,
            "MODEL_PATH": str(tmp_path / "nope.onnx"),
            "CLOUD_PROBABILITY": str(tmp_path / "p.tif"),
        },
        "does not exist",
    )


def test_model_that_is_not_onnx(provider, tmp_path):
    raster = write_raster(tmp_path / "s2.tif", random_scene(30, 30))
    bogus = tmp_path / "cloud_model1_cpu.onnx"
    bogus.write_bytes(os.urandom(4096))
    out = tmp_path / "p.tif"
    expect_error(
        "cloudprobability",
        {"SENTINEL_RASTER": raster, "MODEL_PATH": str(bogus), "CLOUD_PROBABILITY": str(out)},
        "not a valid ONNX model",
    )
    assert not out.exists() and not list(tmp_path.glob(".p.tif.partial*"))


def test_card_that_contradicts_the_model(provider, tmp_path):
    from onnx_models import conv1x1_model, write_card

    raster = write_raster(tmp_path / "s2.tif", random_scene(70, 70))
    model = conv1x1_model(tmp_path / "m.onnx", np.ones((3, 6)), np.zeros(3), tile=64)
    write_card(tmp_path / "m.json")  # says 4 bands
    expect_error(
        "cloudprobability",
        {"SENTINEL_RASTER": raster, "MODEL_PATH": str(model), "CLOUD_PROBABILITY": str(tmp_path / "p.tif")},
        "does not match its card",
    )


def test_product_mask_that_does_not_overlap(provider, tmp_path):
    cloud = probability_raster(tmp_path / "c.tif", np.zeros((20, 20)))
    far = write_raster(
        tmp_path / "far.tif", np.zeros((20, 20), dtype=np.uint8), transform=(700000.0, 10.0, 0.0, 6000000.0, 0.0, -10.0)
    )
    out = tmp_path / "m.tif"
    expect_error(
        "mergecloudmasks",
        {"CLOUD_PROBABILITY": cloud, "PRODUCT_MASK": far, "MERGED_CLOUD_MASK": str(out)},
        "does not overlap",
    )
    assert not out.exists()


@pytest.mark.parametrize(
    "name,format_name", [("m.gpkg", "GeoPackage"), ("m.png", "Portable Network Graphics"), ("m.vrt", "Virtual Raster")]
)
def test_an_output_named_for_another_format_is_refused(provider, tmp_path, name, format_name):
    """An output named for another format is refused before any work, nothing written.

    The outputs are GeoTIFF: under such a name they would be a GeoTIFF that GeoPackage tools
    and image viewers cannot open."""
    cloud = probability_raster(tmp_path / "c.tif", np.zeros((20, 20)))
    out = tmp_path / "out"
    out.mkdir()
    expect_error(
        "mergecloudmasks",
        {"CLOUD_PROBABILITY": cloud, "MERGED_CLOUD_MASK": str(out / name)},
        format_name,
        "written as GeoTIFF",
        ".tif name",
    )
    assert os.listdir(out) == []


def test_temporary_outputs_are_geotiff_whatever_the_default_raster_format(provider, tmp_path):
    """A user whose default raster format is GeoPackage (Processing options) gets GeoTIFFs named .tif.

    Every run with a temporary output (the modeler's between steps) would otherwise write a
    GeoTIFF named MASK.gpkg."""
    from qgis.core import QgsProcessingUtils, QgsRasterFileWriter, QgsSettings

    # Where Processing's options keep it: QGIS 3.22 an index into the formats, later releases the extension.
    old_key = "Processing/Configuration/DefaultOutputRasterLayerExt"
    new_key = "qgis/configuration/default-output-raster-ext"
    settings = QgsSettings()
    settings.setValue(old_key, QgsRasterFileWriter.supportedFormatExtensions().index("gpkg"))
    settings.setValue(new_key, "gpkg")
    try:
        assert QgsProcessingUtils.defaultRasterExtension() == "gpkg"
        cloud = probability_raster(tmp_path / "c.tif", np.full((20, 20), 0.9))
        result = run("mergecloudmasks", {"CLOUD_PROBABILITY": cloud, "MERGED_CLOUD_MASK": "TEMPORARY_OUTPUT"})
    finally:
        settings.remove(old_key)
        settings.remove(new_key)
    mask = result["MERGED_CLOUD_MASK"]
    assert mask.endswith(".tif")
    assert gdal.Open(mask).GetDriver().ShortName == "GTiff"
    assert (read(mask) == 1).all()


def test_raster_without_georeference(provider, tmp_path):
    raster = write_raster(tmp_path / "plain.tif", random_scene(30, 30), epsg=None, transform=None)
    expect_error(
        "improvecloudmask", {"S2_RASTER": raster, "MASK": str(tmp_path / "m.tif")}, "no georeference", "Assign"
    )
    no_crs = write_raster(tmp_path / "no_crs.tif", random_scene(30, 30), epsg=None)
    expect_error(
        "improvecloudmask", {"S2_RASTER": no_crs, "MASK": str(tmp_path / "m.tif")}, "no coordinate reference system"
    )


def test_loaded_mask_gets_the_paletted_style(provider, qgis_iface, monkeypatch, tmp_path):
    import processing
    from qgis.core import QgsLayerTreeModel, QgsPalettedRasterRenderer, QgsProject
    from qgis.gui import QgsLayerTreeView

    # QGIS >= 3.44 hands iface.layerTreeView() to QgsProcessingGuiUtils.addResultLayers,
    # which refuses pytest-qgis's stand-in (a MagicMock): give it a real one.
    model = QgsLayerTreeModel(QgsProject.instance().layerTreeRoot())
    view = QgsLayerTreeView()
    view.setModel(model)
    monkeypatch.setattr(qgis_iface, "layerTreeView", lambda: view)
    probabilities = np.zeros((40, 40), dtype=np.float32)
    probabilities[10:20, 10:20] = 0.9
    cloud = probability_raster(tmp_path / "c.tif", probabilities)
    result = processing.runAndLoadResults(
        "cloudmask:mergecloudmasks",
        {"CLOUD_PROBABILITY": cloud, "DILATION": 1, "MERGED_CLOUD_MASK": str(tmp_path / "m.tif")},
    )
    layers = [lyr for lyr in QgsProject.instance().mapLayers().values() if lyr.source() == result["MERGED_CLOUD_MASK"]]
    assert len(layers) == 1
    layer = layers[0]
    try:
        assert isinstance(layer.renderer(), QgsPalettedRasterRenderer)
        labels = {c.value: c.label for c in layer.renderer().classes()}
        assert labels == {0: "clear", 1: "cloud", 2: "cloud shadow"}
    finally:
        QgsProject.instance().removeAllMapLayers()


@pytest.mark.parametrize(
    "width, height, resolution, said",
    [
        (120, 300, 0, True),
        (300, 300, 0, False),
        (300, 300, None, True),  # at the model's own 30 m it is 100 x 100 pixels
    ],
)
def test_a_raster_smaller_than_a_tile_is_said_to_lack_context(provider, tmp_path, width, height, resolution, said):
    """A crop narrower than the model's tiles gives the model no surroundings: the log says so.

    Tiny crops can come out all clear; the log points to Extent, which keeps the scene's."""
    import processing

    require(L1C_STACK)
    ds = gdal.Open(str(L1C_STACK))
    names = [ds.GetRasterBand(b + 1).GetDescription() for b in range(ds.RasterCount)]
    raster = write_raster(tmp_path / "crop.tif", ds.ReadAsArray(0, 0, width, height), descriptions=names)
    feedback = LogFeedback()
    processing.run(
        "cloudmask:improvecloudmask",
        {"S2_RASTER": raster, **SAMPLE_PARAMS, "RESOLUTION": resolution, "MASK": str(tmp_path / "mask.tif")},
        feedback=feedback,
    )
    log = " ".join(feedback.lines)
    del feedback  # a QObject kept alive by a failure's traceback would outlive QGIS
    assert ("smaller than the tiles" in log and "Extent" in log and f"{width} x {height}" in log) == said, log
