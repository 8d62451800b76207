"""Season layers (core, no QGIS): exact counts, several grids, and a season of the real sample.

Exact counts on masks made by hand, tiles on several grids, and on a season built from the
real sample scene (test/season_scene.py) the persistent layer finds the patch the model
calls cloud on every date and none of the moving clouds."""

import os

import numpy as np
import pytest
from osgeo import gdal
from rasters import write_raster

from cloud_mask_improver.core import area as areas
from cloud_mask_improver.core import merge
from cloud_mask_improver.core.errors import SettingsError
from cloud_mask_improver.core.season import batch, layers

C, K, S, N = merge.CLEAR, merge.CLOUD, merge.SHADOW, merge.NODATA


def _masks(tmp_path, stack: np.ndarray, tile="T33TUK", origin=(500000.0, 10.0, 0.0, 5000000.0, 0.0, -10.0)):
    """One ok row per date, with its mask written from ``stack`` [dates, rows, cols]."""
    rows = []
    for k, values in enumerate(stack):
        path = tmp_path / f"{tile}_{k}.tif"
        write_raster(path, values[None].astype(np.uint8), nodata=None, transform=origin)
        rows.append(
            batch.Row(
                input=str(path),
                tile=tile,
                sensed=f"2023-06-{k + 1:02d}T10:00:00",
                status="ok",
                mask=str(path),
                cloud_fraction=float((values == K).mean()),
            )
        )
    return rows


def _read(path):
    return gdal.Open(path).ReadAsArray()


def test_counts_frequency_and_persistent_pixels_match_a_hand_count(tmp_path):
    # Pixel a: cloud on 5 of 5 dates; b: cloud on 4 of 5 (80 %); c: shadow every date (not cloud);
    # d: cloud on the 3 dates it has data (too few dates); e: never any data.
    a, b, c = [K] * 5, [K, K, K, K, C], [S] * 5
    d, e = [K, K, K, N, N], [N] * 5
    stack = np.array([a, b, c, d, e], dtype=np.uint8).T.reshape(5, 1, 5)
    rows = _masks(tmp_path, stack)
    result = layers.build(rows, str(tmp_path), layers.SeasonSettings(share=0.9, min_dates=4))
    paths = result.tiles[0].paths
    assert _read(paths["valid"]).tolist() == [[5, 5, 5, 3, 0]]
    assert _read(paths["clear"]).tolist() == [[0, 1, 0, 0, 0]]
    np.testing.assert_allclose(_read(paths["cloud_frequency"]), [[1.0, 0.8, 0.0, 1.0, -1.0]])
    assert _read(paths["persistent"]).tolist() == [[1, 0, 0, 255, 255]]
    # Each product's cloud on persistent pixels: dates 1-3 have cloud on a, b, d (a persistent),
    # date 4 on a and b, date 5 on a only.
    assert [r.persistent_cloud_share for r in rows] == [pytest.approx(1 / 3)] * 3 + [0.5, 1.0]
    # At 0.8, pixel b is persistent too: the share is "at least".
    result = layers.build(rows, str(tmp_path), layers.SeasonSettings(share=0.8, min_dates=4))
    assert _read(result.tiles[0].paths["persistent"]).tolist() == [[1, 1, 0, 255, 255]]
    assert [r.persistent_cloud_share for r in rows] == [pytest.approx(2 / 3)] * 3 + [1.0, 1.0]


def test_windows_give_the_same_layers_as_one_read(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    stack = rng.choice([C, K, S, N], p=[0.5, 0.3, 0.1, 0.1], size=(6, 37, 23)).astype(np.uint8)
    rows = _masks(tmp_path, stack)
    whole = layers.build(rows, str(tmp_path / "."), layers.SeasonSettings(0.6, 3))
    expected = {k: _read(p) for k, p in whole.tiles[0].paths.items()}
    shares = [r.persistent_cloud_share for r in rows]
    monkeypatch.setattr(layers, "WINDOW_ROWS", 5)  # 8 windows, the last one short
    windowed = layers.build(rows, str(tmp_path), layers.SeasonSettings(0.6, 3))
    for key, path in windowed.tiles[0].paths.items():
        np.testing.assert_array_equal(_read(path), expected[key], err_msg=key)
    assert [r.persistent_cloud_share for r in rows] == shares
    persistent = (stack == K).sum(0) >= 0.6 * (stack != N).sum(0)
    assert np.array_equal(expected["persistent"] == 1, persistent & ((stack != N).sum(0) >= 3))


def test_a_tile_on_two_grids_gets_two_sets_of_layers_and_the_log_says_why(tmp_path):
    rows = _masks(tmp_path, np.zeros((3, 4, 4), dtype=np.uint8))
    other = tmp_path / "coarse"
    other.mkdir()
    rows += _masks(other, np.full((2, 2, 2), K, dtype=np.uint8), origin=(500000.0, 20.0, 0.0, 5000000.0, 0.0, -20.0))
    result = layers.build(rows, str(tmp_path))
    assert [t.name for t in result.tiles] == ["season_T33TUK", "season_T33TUK_grid2"]
    assert [t.dates for t in result.tiles] == [3, 2]
    assert "another grid" in result.messages[0] and "season_T33TUK_grid2" in result.messages[0]
    assert _read(result.tiles[1].paths["valid"]).tolist() == [[2, 2], [2, 2]]


def test_per_field_share_and_the_log_names_a_field_whose_cloud_is_persistent(tmp_path):
    stack = np.zeros((6, 10, 20), dtype=np.uint8)
    stack[:, 2:5, 2:5] = K  # bright ground in the west field: cloud on every date
    stack[0, 5:8, 12:18] = K  # one real cloud in the east field
    rows = _masks(tmp_path, stack)
    west = "POLYGON((500000 5000000,500100 5000000,500100 4999900,500000 4999900,500000 5000000))"
    east = "POLYGON((500100 5000000,500200 5000000,500200 4999900,500100 4999900,500100 5000000))"
    for row in rows:
        row.fields = [batch.FieldRow("west"), batch.FieldRow("east")]
    area = areas.Area((west, east), "EPSG:32633", ("west", "east"), "fields")
    result = layers.build(rows, str(tmp_path), area=area)
    assert [f.persistent_cloud_share for f in rows[0].fields] == [1.0, 0.0]
    assert [f.persistent_cloud_share for f in rows[1].fields] == [1.0, None]  # no cloud in the east field
    assert any("field west" in m for m in result.messages)
    assert not any("field east" in m for m in result.messages)


@pytest.mark.parametrize(
    "share, dates, word", [(0.0, 5, "share"), (1.5, 5, "share"), (0.9, 0, "dates"), (0.9, 2.5, "dates")]
)
def test_bad_settings_are_refused_with_the_fix(share, dates, word):
    with pytest.raises(SettingsError, match=word) as caught:
        layers.SeasonSettings(share, dates).validate()
    assert "Give e.g." in str(caught.value)


# -- the sample season: real clouds moving, a patch called cloud on every date


def test_default_finds_the_patch_and_no_moving_cloud(sample_season):
    season, rows, out = sample_season
    result = layers.build(rows, str(out))
    persistent = _read(result.tiles[0].paths["persistent"])
    # 95 % of the patch: where a date's moving cloud passes over it, its thin edge or its
    # shadow may replace the patch's cloud on a date or two.
    assert (persistent[season.patch] == 1).mean() > 0.9
    near = merge.dilate_disk(season.patch, 5 + 3)  # the mask's dilation around the patch, and a margin
    assert not (persistent[~near] == 1).any()
    # Every date's cloud partly lies on the patch; the moving clouds hold most of it.
    assert all(0.02 < r.persistent_cloud_share < 0.25 for r in rows)


def test_a_rerun_that_keeps_the_masks_builds_the_same_layers(sample_season, tmp_path):
    season, rows, out = sample_season
    first = layers.build(rows, str(out))
    before = {k: _read(p) for k, p in first.tiles[0].paths.items()}
    items = batch.plan_items([str(p) for p in season.stacks])
    again = batch.run_sequential(items, batch.BatchOptions(batch.template(cloud_models=("ukis-6b-l2a",))), str(out))
    assert all(r.reused for r in again)
    second = layers.build(again, str(out))
    for key, path in second.tiles[0].paths.items():
        np.testing.assert_array_equal(_read(path), before[key], err_msg=key)
    assert [r.persistent_cloud_share for r in again] == [r.persistent_cloud_share for r in rows]


def test_a_rerun_on_the_output_folder_does_not_take_the_season_layers_for_products(sample_season):
    _, rows, out = sample_season
    result = layers.build(rows, str(out))
    assert all(os.path.exists(p) for p in result.tiles[0].paths.values())
    # The folder holds the masks (with their records) and the season layers: nothing is a product.
    assert batch.plan_items([str(out)], "*.tif") == []
