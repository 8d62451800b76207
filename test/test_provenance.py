"""The SOURCE output (core/provenance.py): which source flagged each pixel of the improved mask.

On the real sample scene with the real model."""

import filecmp
from dataclasses import replace

import numpy as np
import pytest
from osgeo import gdal
from rasters import read
from samples import L1C_STACK, PRODUCT_MASK, model_file, require

from cloud_mask_improver.core import merge, pipeline, provenance

MODEL = "ukis-6b-l1c"
THR = 0.5
# Rows and columns of the sample (512 x 856) changed by the scene below.
MISSED = (slice(100, 260), slice(250, 400))  # the product mask is cleared here: it misses the cloud
INVENTED = (slice(480, 520), slice(200, 240))  # the product mask says cloud here, on clear ground
NO_DATA = (slice(800, 856), slice(400, 512))  # the imagery has no data here


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """The sample with a product mask that misses a cloud the model finds and invents one it does not.

    And a corner without data."""
    require(L1C_STACK, PRODUCT_MASK)
    model_file(MODEL)
    folder = tmp_path_factory.mktemp("provenance")
    product = read(PRODUCT_MASK).copy()
    product[MISSED] = 0
    product[INVENTED] = 1
    ds = gdal.Open(str(PRODUCT_MASK))
    product_path = folder / "product.tif"
    gdal.Translate(str(product_path), ds)
    out = gdal.Open(str(product_path), gdal.GA_Update)
    out.GetRasterBand(1).WriteArray(product)
    out = None
    stack = folder / "stack.tif"
    gdal.Translate(str(stack), str(L1C_STACK))
    out = gdal.Open(str(stack), gdal.GA_Update)
    for b in range(1, out.RasterCount + 1):
        band = out.GetRasterBand(b)
        values = band.ReadAsArray()
        values[NO_DATA] = 0  # the stack's declared nodata
        band.WriteArray(values)
    out = None
    return folder, stack, product_path, product


def request(stack, product, folder, name, source=True, **settings):
    # The raster's own resolution: at the models' 30 m a pixel on the edge of a nodata area
    # takes the decision of the coarse pixel it lies in (see docs/usage.md), which is not what
    # these pixel-by-pixel checks are about. The toolbox tests below run at the default.
    probability = pipeline.ProbabilityRequest(str(stack), cloud_models=(MODEL,), shadow_model=MODEL, resolution=0)
    return pipeline.ImproveRequest(
        probability,
        str(product),
        merge.MergeSettings(**settings),
        THR,
        THR,
        mask=str(folder / f"{name}_mask.tif"),
        source=str(folder / f"{name}_source.tif") if source else None,
        outputs=pipeline.ProbabilityOutputs(
            cloud=str(folder / f"{name}_cloud.tif"), shadow=str(folder / f"{name}_shadow.tif")
        ),
    )


@pytest.fixture(scope="module")
def runs(scene):
    folder, stack, product_path, _ = scene
    plain = pipeline.improve(request(stack, product_path, folder, "plain", source=False))
    report = pipeline.improve(request(stack, product_path, folder, "with"))
    return plain, report


def test_the_mask_is_the_same_byte_for_byte_with_or_without_source(scene, runs):
    folder = scene[0]
    assert filecmp.cmp(folder / "plain_mask.tif", folder / "with_mask.tif", shallow=False)
    assert runs[0].fractions == runs[1].fractions


def test_source_agrees_with_the_mask_pixel_by_pixel(scene, runs):
    folder = scene[0]
    mask, source = read(folder / "with_mask.tif"), read(folder / "with_source.tif")
    flagged = (mask == merge.CLOUD) | (mask == merge.SHADOW)
    assert np.array_equal(flagged, (source >= provenance.BOTH) & (source <= provenance.FILLED))
    assert np.array_equal(mask == merge.CLEAR, (source == provenance.CLEAR) | (source == provenance.CLEARED))
    assert np.array_equal(mask == merge.NODATA, source == provenance.NODATA)
    assert (source[NO_DATA] == provenance.NODATA).all()


def test_each_source_is_named_where_it_flagged(scene, runs):
    folder, _, _, product = scene
    source = read(folder / "with_source.tif")
    cloud_p, shadow_p = read(folder / "with_cloud.tif"), read(folder / "with_shadow.tif")
    model_cloud, model_shadow = cloud_p > THR, shadow_p > THR
    product_cloud = product == 1
    # The cloud the product mask misses: the model's pixels say "cloud model only".
    missed = np.zeros(source.shape, bool)
    missed[MISSED] = True
    assert (missed & model_cloud).sum() > 1000  # the sample's cloud is there
    assert (source[missed & model_cloud] == provenance.CLOUD_MODEL).all()
    # The cloud it invents on clear ground: "product mask only" where no model flags.
    invented = np.zeros(source.shape, bool)
    invented[INVENTED] = True
    alone = invented & ~model_cloud & ~model_shadow
    assert alone.sum() > 1500
    assert (source[alone] == provenance.PRODUCT).all()
    # Both agree elsewhere on the real cloud; the shadow model where nothing else flags.
    assert (source[product_cloud & model_cloud & ~missed] == provenance.BOTH).all()
    assert (source[product_cloud & model_cloud & ~missed]).size > 10000
    shadow_only = model_shadow & ~model_cloud & ~product_cloud & (source != provenance.NODATA)
    assert shadow_only.sum() > 1000 and (source[shadow_only] == provenance.SHADOW_MODEL).all()
    # Nothing flagged these pixels themselves: the dilation grew them, within its radius.
    grown = source == provenance.DILATION
    assert grown.sum() > 1000
    assert not (grown & (model_cloud | model_shadow | product_cloud)).any()
    sources = (source >= provenance.BOTH) & (source <= provenance.SHADOW_MODEL)
    assert not (grown & ~merge.dilate_disk(sources, merge.MergeSettings().dilation)).any()


def test_the_figures_say_what_each_source_added(scene, runs):
    folder, _, _, product = scene
    report = runs[1]
    source = read(folder / "with_source.tif")
    valid = source != provenance.NODATA
    figures = report.provenance
    assert figures["PRODUCT_MASK_FRACTION"] == pytest.approx(((product == 1) & valid).sum() / valid.sum())
    assert figures["MASKED_FRACTION"] == pytest.approx(
        report.fractions["CLOUD_FRACTION"] + report.fractions["SHADOW_FRACTION"]
    )
    assert figures["MODEL_ADDED_FRACTION"] == pytest.approx(
        np.isin(source, [provenance.CLOUD_MODEL, provenance.SHADOW_MODEL]).sum() / valid.sum()
    )
    assert figures["DILATION_FRACTION"] == pytest.approx((source == provenance.DILATION).sum() / valid.sum())
    assert figures["MODEL_ADDED_FRACTION"] > 0.05 and figures["DILATION_FRACTION"] > 0.05
    assert f"{100 * figures['MASKED_FRACTION']:.1f} %" in report.notes[-1]
    assert runs[0].provenance == {}  # a run without SOURCE counts nothing more


def test_the_raster_names_and_colours_its_categories(scene, runs):
    ds = gdal.Open(str(scene[0] / "with_source.tif"))
    band = ds.GetRasterBand(1)
    assert band.DataType == gdal.GDT_Byte and band.GetNoDataValue() == provenance.NODATA
    assert band.GetCategoryNames()[:8] == [provenance.NAMES[v] for v in range(8)]
    assert band.GetColorTable().GetCount() == 8  # one legend row per category
    assert band.GetColorTable().GetColorEntry(provenance.CLOUD_MODEL) == provenance.COLOURS[provenance.CLOUD_MODEL]
    assert ds.GetGeoTransform() == gdal.Open(str(scene[0] / "with_mask.tif")).GetGeoTransform()


def test_minimum_area_fills_and_clears_are_named_and_windows_do_not_show(scene):
    """Without dilation the sample has small patches and gaps for the minimum area.

    The source of a run in 128-row windows equals that of one window over the whole scene."""
    folder, stack, product_path, _ = scene
    settings = {"dilation": 0, "min_area": 40}
    plain = pipeline.improve(request(stack, product_path, folder, "ma_plain", source=False, **settings))
    run_plan = pipeline.plan(request(stack, product_path, folder, "ma", **settings))
    report = pipeline.run(run_plan)
    mask, source = read(folder / "ma_mask.tif"), read(folder / "ma_source.tif")
    assert filecmp.cmp(folder / "ma_plain_mask.tif", folder / "ma_mask.tif", shallow=False)
    assert plain.fractions == report.fractions
    assert (source == provenance.FILLED).sum() > 0 and (source == provenance.CLEARED).sum() > 0
    assert not (source == provenance.DILATION).any()  # no dilation
    assert (mask[source == provenance.CLEARED] == merge.CLEAR).all()
    assert np.isin(mask[source == provenance.FILLED], [merge.CLOUD, merge.SHADOW]).all()
    assert report.provenance["FILLED_FRACTION"] > 0 and report.provenance["CLEARED_FRACTION"] > 0
    one = replace(
        run_plan,
        merge=replace(run_plan.merge, window_rows=4096),
        mask=str(folder / "one_mask.tif"),
        source=str(folder / "one_source.tif"),
    )
    pipeline.run(one)
    assert np.array_equal(read(folder / "one_source.tif"), source)


def test_a_plain_merge_of_probability_files_gives_the_same_source(scene, runs):
    """At a processing resolution the merge reads the probabilities from files: the same categories.

    It reads them instead of the flags recorded as they were computed; the same categories
    come out."""
    folder, _, product_path, _ = scene
    run_plan = pipeline.plan(request(scene[1], product_path, folder, "with"))
    from cloud_mask_improver.core.windowed_merge import SourceOutput, merge_to_mask

    source = SourceOutput(str(folder / "files_source.tif"))
    merge_to_mask(
        run_plan.merge,
        str(folder / "with_cloud.tif"),
        str(folder / "with_shadow.tif"),
        str(folder / "files_mask.tif"),
        source=source,
    )
    assert np.array_equal(read(folder / "files_source.tif"), read(folder / "with_source.tif"))


def test_source_on_the_path_of_another_output_is_refused(scene, tmp_path):
    from cloud_mask_improver.core.staging import OutputError

    _, stack, product_path, _ = scene
    same = replace(request(stack, product_path, tmp_path, "x"), source=str(tmp_path / "x_mask.tif"))
    with pytest.raises(OutputError, match="same file"):
        pipeline.plan(same)
    assert not list(tmp_path.iterdir())


def test_categories_of_a_small_block():
    """The rules on a hand-made block: precedence and the minimum area's settling."""
    product, cloud, shadow = provenance.PRODUCT_BIT, provenance.CLOUD_MODEL_BIT, provenance.SHADOW_MODEL_BIT
    bits = np.array([[0, product, cloud, shadow, product | shadow, cloud | shadow, 0, 0, 0]], np.uint8)
    dilated = np.array([[1, 1, 1, 2, 2, 1, 0, 1, 255]], np.uint8)
    final = np.array([[1, 1, 1, 2, 2, 1, 1, 0, 255]], np.uint8)
    assert provenance.categories(bits, dilated, final).tolist() == [
        [
            provenance.DILATION,
            provenance.PRODUCT,
            provenance.CLOUD_MODEL,
            provenance.SHADOW_MODEL,
            provenance.BOTH,
            provenance.CLOUD_MODEL,
            provenance.FILLED,
            provenance.CLEARED,
            provenance.NODATA,
        ]
    ]


# -- as users run it: toolbox, a model, qgis_process, the layer QGIS loads

SAMPLE_PARAMS = {"CLOUD_MODEL": MODEL, "SHADOW_MODEL": MODEL, "CLOUD_THR": THR, "SHADOW_THR": THR}


@pytest.fixture(scope="module")
def toolbox(provider, tmp_path_factory):
    import processing

    require(L1C_STACK, PRODUCT_MASK)
    folder = tmp_path_factory.mktemp("toolbox")
    result = processing.run(
        "cloudmask:improvecloudmask",
        {
            "S2_RASTER": str(L1C_STACK),
            "PRODUCT_MASK": str(PRODUCT_MASK),
            "MASK": str(folder / "mask.tif"),
            "SOURCE": str(folder / "source.tif"),
            **SAMPLE_PARAMS,
        },
    )
    return folder, result


def test_toolbox_writes_source_and_its_figures(toolbox):
    folder, result = toolbox
    assert result["SOURCE"] == str(folder / "source.tif")
    source, mask = read(folder / "source.tif"), read(folder / "mask.tif")
    assert set(np.unique(source)) == {
        provenance.CLEAR,
        provenance.BOTH,
        provenance.CLOUD_MODEL,
        provenance.PRODUCT,
        provenance.SHADOW_MODEL,
        provenance.DILATION,
    }
    assert np.array_equal(mask == merge.CLEAR, source == provenance.CLEAR)
    for name in provenance.FIGURES:
        assert 0.0 <= result[name] <= 1.0
    assert result["MASKED_FRACTION"] == pytest.approx(result["CLOUD_FRACTION"] + result["SHADOW_FRACTION"])
    assert result["PRODUCT_MASK_FRACTION"] == pytest.approx((read(PRODUCT_MASK) == 1).mean())


def test_without_source_the_toolbox_gives_no_figures(provider, tmp_path):
    import processing

    result = processing.run(
        "cloudmask:improvecloudmask",
        {
            "S2_RASTER": str(L1C_STACK),
            "PRODUCT_MASK": str(PRODUCT_MASK),
            "MASK": str(tmp_path / "m.tif"),
            **SAMPLE_PARAMS,
        },
    )
    assert result.get("SOURCE") is None and result.get("MASKED_FRACTION") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tif", "m.tif.aux.xml"]


def test_ensemble_writes_source(provider, toolbox, tmp_path):
    import processing

    result = processing.run(
        "cloudmask:improvecloudmaskensemble",
        {
            "S2_RASTER": str(L1C_STACK),
            "PRODUCT_MASK": str(PRODUCT_MASK),
            "CLOUD_MODELS": "ukis-6b-l1c,ukis-4b-l1c",
            "SHADOW_MODEL": MODEL,
            "CLOUD_THR": THR,
            "SHADOW_THR": THR,
            "MASK": str(tmp_path / "m.tif"),
            "SOURCE": str(tmp_path / "s.tif"),
        },
    )
    source, mask = read(tmp_path / "s.tif"), read(tmp_path / "m.tif")
    flagged = (source >= provenance.BOTH) & (source <= provenance.FILLED)
    assert np.array_equal(np.isin(mask, [merge.CLOUD, merge.SHADOW]), flagged)
    assert (source == provenance.CLOUD_MODEL).any() and result["MODEL_ADDED_FRACTION"] > 0


def test_a_model_with_the_source_output(provider, toolbox, tmp_path):
    """The graphical modeler: SOURCE as a model output of an Improve cloud mask step."""
    import processing
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
    )

    model = QgsProcessingModelAlgorithm("provenance", "tests")
    child = QgsProcessingModelChildAlgorithm("cloudmask:improvecloudmask")
    child.setChildId("improve")
    for name, value in {"S2_RASTER": str(L1C_STACK), "PRODUCT_MASK": str(PRODUCT_MASK), **SAMPLE_PARAMS}.items():
        child.addParameterSources(name, [QgsProcessingModelChildParameterSource.fromStaticValue(value)])
    outputs = {}
    for name in ("MASK", "SOURCE"):
        output = QgsProcessingModelOutput(name.lower(), name.lower())
        output.setChildId("improve")
        output.setChildOutputName(name)
        outputs[name.lower()] = output
    child.setModelOutputs(outputs)
    model.addChildAlgorithm(child)
    # "improve:mask" on QGIS 3.22; QGIS 3.40 names it after the description (here "mask")
    names = {p.name().split(":")[-1]: p.name() for p in model.destinationParameterDefinitions()}
    result = processing.run(model, {names["mask"]: str(tmp_path / "m.tif"), names["source"]: str(tmp_path / "s.tif")})
    assert result[names["source"]] == str(tmp_path / "s.tif")
    assert np.array_equal(read(tmp_path / "s.tif"), read(toolbox[0] / "source.tif"))


def test_qgis_process_writes_the_same_source(plugin_dir, toolbox, tmp_path):
    import json
    import os
    import shutil
    import subprocess

    exe = shutil.which("qgis_process.bin") or shutil.which("qgis_process")
    env = dict(
        os.environ,
        QGIS_PLUGINPATH=str(plugin_dir),
        QT_QPA_PLATFORM="offscreen",
        QGIS_CUSTOM_CONFIG_PATH=str(tmp_path / "profile"),
    )
    subprocess.run([exe, "plugins", "enable", "cloud_mask_improver"], env=env, capture_output=True, check=True)
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
            f"MASK={tmp_path / 'm.tif'}",
            f"SOURCE={tmp_path / 's.tif'}",
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
    assert np.array_equal(read(tmp_path / "s.tif"), read(toolbox[0] / "source.tif"))
    assert results["DILATION_FRACTION"] == pytest.approx(toolbox[1]["DILATION_FRACTION"])


def test_the_loaded_source_layer_gets_its_legend(provider, qgis_iface, tmp_path):
    import processing
    from qgis.core import QgsPalettedRasterRenderer, QgsProject

    from cloud_mask_improver.algorithms.styling import pending_stylers

    for run in range(2):  # a new post-processor per output per run: the second run is styled too
        result = processing.runAndLoadResults(
            "cloudmask:improvecloudmask",
            {
                "S2_RASTER": str(L1C_STACK),
                "PRODUCT_MASK": str(PRODUCT_MASK),
                "MASK": str(tmp_path / f"m{run}.tif"),
                "SOURCE": str(tmp_path / f"s{run}.tif"),
                **SAMPLE_PARAMS,
            },
        )
        layers = [lyr for lyr in QgsProject.instance().mapLayers().values() if lyr.source() == result["SOURCE"]]
        try:
            assert len(layers) == 1
            renderer = layers[0].renderer()
            assert isinstance(renderer, QgsPalettedRasterRenderer)
            labels = {c.value: c.label for c in renderer.classes()}
            assert labels == {v: provenance.NAMES[v] for v in range(8)}
            assert renderer.classes()[provenance.CLEAR].color.alpha() == 0  # the imagery shows through clear
        finally:
            QgsProject.instance().removeAllMapLayers()
    assert pending_stylers() == 0


def test_an_extent_gives_the_whole_scene_source_there(provider, toolbox, tmp_path):
    """With an extent only the tiles it needs run; its SOURCE pixels equal the whole scene's.

    And the figures are those of the extent."""
    import processing

    x0, y0 = 290040.0, 4985040.0
    cols, rows = slice(100, 300), slice(200, 500)
    extent = f"{x0 + 10 * cols.start},{x0 + 10 * cols.stop},{y0 - 10 * rows.stop},{y0 - 10 * rows.start} [EPSG:32633]"
    result = processing.run(
        "cloudmask:improvecloudmask",
        {
            "S2_RASTER": str(L1C_STACK),
            "PRODUCT_MASK": str(PRODUCT_MASK),
            "EXTENT": extent,
            "MASK": str(tmp_path / "m.tif"),
            "SOURCE": str(tmp_path / "s.tif"),
            **SAMPLE_PARAMS,
        },
    )
    whole = read(toolbox[0] / "source.tif")[rows, cols]
    assert np.array_equal(read(tmp_path / "s.tif"), whole)
    assert result["DILATION_FRACTION"] == pytest.approx((whole == provenance.DILATION).mean())


@pytest.mark.parametrize("name, said", [("source.gpkg", "GeoTIFF"), ("missing/source.tif", "does not exist")])
def test_a_source_that_cannot_be_written_is_refused_before_any_work(provider, tmp_path, name, said):
    import processing
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match=said):
        processing.run(
            "cloudmask:improvecloudmask",
            {
                "S2_RASTER": str(L1C_STACK),
                "PRODUCT_MASK": str(PRODUCT_MASK),
                "MASK": str(tmp_path / "m.tif"),
                "SOURCE": str(tmp_path / name),
                **SAMPLE_PARAMS,
            },
        )
    assert not list(tmp_path.iterdir())  # no mask either: nothing was run
