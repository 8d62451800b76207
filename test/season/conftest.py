"""Shared by the season tests: the sample season masked once, a product per module, a field.

The sample season is test/season_scene.py's; a real product per test module, and a field
inside that product."""

import pytest
from osgeo import gdal
from s2_product import build_product
from season_scene import build_season

from cloud_mask_improver.core import area
from cloud_mask_improver.core.season import batch
from cloud_mask_improver.core.sentinel2 import product as s2_product


@pytest.fixture(scope="session")
def sample_season(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sample_season")
    season = build_season(folder / "stacks")
    out = folder / "masks"
    batch.prepare_output_folder(str(out))
    items = batch.plan_items([str(p) for p in season.stacks])
    rows = batch.run_sequential(items, batch.BatchOptions(batch.template(cloud_models=("ukis-6b-l2a",))), str(out))
    assert all(r.ok for r in rows), [r.error for r in rows if not r.ok]
    return season, rows, out


@pytest.fixture(scope="module")
def product(tmp_path_factory):
    """A real L2A product (baseline 04.00) made from the sample scene, once per test module."""
    return build_product(tmp_path_factory.mktemp("product"), "L2A", "04.00")


@pytest.fixture
def product_field(product, tmp_path):
    """A 700 x 900 m field inside ``product``: its mask's box is 70 x 90 pixels."""
    stack = str(tmp_path / "stack.vrt")
    s2_product.prepare(str(product.zip), stack, str(tmp_path / "m.vrt"), 10.0)
    x0, _, _, y0, _, _ = gdal.Open(stack).GetGeoTransform()
    square = (
        f"POLYGON (({x0 + 500} {y0 - 1500},{x0 + 1200} {y0 - 1500},{x0 + 1200} {y0 - 600},"
        f"{x0 + 500} {y0 - 600},{x0 + 500} {y0 - 1500}))"
    )
    return area.Area((square,), gdal.Open(stack).GetProjection(), ("field",), "test")
