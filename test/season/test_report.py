"""The season report (core, no QGIS) on the sample season.

Self-contained HTML with the chart, the dates ranked by clear fraction, the season layers'
figures and a quicklook per date; without matplotlib it says so and keeps the rest."""

import base64
import re
import sys
from pathlib import Path

from osgeo import gdal

from cloud_mask_improver.core.season import report

PNG = re.compile(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'")


def _ranked_dates(page: str) -> list[str]:
    table = page.split("<h2>Dates ranked")[1].split("</table>")[0]
    return re.findall(r"<tr><td>\d+</td><td>([^<]+)</td>", table)


def test_the_report_holds_chart_ranking_layers_and_a_quicklook_per_date(sample_season):
    _, rows, out = sample_season
    season, path = report.season_outputs(rows, str(out))
    page = Path(path).read_text(encoding="utf-8")
    images = PNG.findall(page)
    assert len(images) == 1 + len(rows)  # the chart, then one quicklook per date
    for data in images:  # real pictures GDAL can open
        name = "/vsimem/report_test.png"
        gdal.FileFromMemBuffer(name, base64.b64decode(data))
        assert gdal.Open(name).RasterCount >= 3
        gdal.Unlink(name)
    # Nothing fetched when opened: no script, no remote address.
    assert "<script" not in page.lower() and "http://" not in page and "https://" not in page
    # The dates ranked by clear fraction, best first.
    best_first = sorted(rows, key=lambda r: -r.clear_fraction)
    assert _ranked_dates(page) == [r.sensed.replace("T", " ") for r in best_first]
    tile = season.tiles[0]
    assert f"{tile.persistent} px" in page and "season_T33TUK_*.tif" in page


def test_without_matplotlib_the_report_says_so_and_keeps_the_tables(sample_season, monkeypatch, tmp_path):
    _, rows, _ = sample_season
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails as where it is missing
    path = report.write(rows, str(tmp_path), None)
    page = Path(path).read_text(encoding="utf-8")
    assert "No chart: matplotlib is not installed" in page and "python3-matplotlib" in page
    assert len(_ranked_dates(page)) == len(rows)
    assert len(PNG.findall(page)) == len(rows)  # the quicklooks need GDAL only


def test_a_failed_product_is_listed_with_its_reason(sample_season, tmp_path):
    from cloud_mask_improver.core.season import batch

    _, rows, _ = sample_season
    broken = batch.Row(
        input="/data/T33TUK_20230801T100559_L2A.zip",
        tile="T33TUK",
        status="failed",
        error="The zip is damaged. Download the product again.",
    )
    page = Path(report.write([*rows, broken], str(tmp_path))).read_text(encoding="utf-8")
    assert "Products that failed" in page and "Download the product again." in page
    assert f"{len(rows)} of {len(rows) + 1} product(s) masked" in page


def test_many_notes_are_cut_to_ten_with_a_pointer_to_the_log(sample_season):
    from cloud_mask_improver.core.season import layers

    _, rows, _ = sample_season
    season = layers.SeasonResult(
        tiles=[layers.TileSeason("season_T33TUK", "T33TUK", len(rows), pixels=4)],
        messages=[f"date {k}: most of its cloud is persistent." for k in range(15)],
    )
    page = report.render(rows, season, area_used=False)
    assert "date 9: most" in page and "date 10: most" not in page
    assert "and 5 more in the batch's log" in page


def test_a_product_quicklook_shows_its_true_colour(product, tmp_path):
    """A product's imagery (not only a band stack's) makes the quicklook's picture."""
    from cloud_mask_improver.core.sentinel2 import product as s2_product

    stack = str(tmp_path / "stack.vrt")
    s2_product.prepare(str(product.zip), stack)
    grid = gdal.Open(stack)  # the mask's grid is the stack's
    rgb = report._true_colour(str(product.zip), grid, 32, 32)
    assert rgb is not None and rgb.shape == (32, 32, 3) and rgb.any()


def _ranking_rows(page: str) -> list[list[str]]:
    table = page.split("<h2>Dates ranked")[1].split("</table>")[0]
    return [re.findall(r"<t[hd][^>]*>([^<]*)</t[hd]>", line) for line in table.split("</tr>") if "<t" in line]


def test_with_source_figures_the_ranking_says_what_the_models_added_to_each_date(sample_season):
    """A date whose product mask missed much cloud is one to check before trusting it."""
    from dataclasses import replace

    _, rows, _ = sample_season
    assert "added by the models" not in report.render(rows, None, area_used=False)  # no SOURCE asked for
    figures = [
        replace(r, masked_fraction=0.5, product_mask_fraction=0.1 * k, model_added_fraction=0.01 * (k + 1))
        for k, r in enumerate(rows)
    ]
    header, *body = _ranking_rows(report.render(figures, None, area_used=False))
    product, added = header.index("flagged by the product mask"), header.index("added by the models")
    by_date = {line[1]: line for line in body}
    for k, row in enumerate(figures):
        line = by_date[row.sensed.replace("T", " ")]
        assert (line[product], line[added]) == (f"{10.0 * k:.1f} %", f"{k + 1.0:.1f} %")
