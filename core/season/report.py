"""The season report: one self-contained HTML page a user opens to choose dates.

It holds a chart of the clear fraction per date (the scene, and each field with an
area), the dates ranked by clear fraction, the season layers' figures and a small
quicklook of each date with its mask. Everything is inside the file: images are
base64 PNG, styles inline, no script and nothing fetched when it is opened, so it
can be mailed or opened offline (QGIS shows it in the Results Viewer).

The chart needs matplotlib (QGIS's installers for Windows and macOS ship it, Debian
has python3-matplotlib); without it the report says so and keeps the tables. The
quicklooks are drawn with GDAL alone.
"""

from __future__ import annotations

import base64
import html
import os
import tempfile
import uuid
from datetime import datetime, timezone

import numpy as np
from osgeo import gdal

from .. import merge
from ..bands import detect_bands
from ..staging import replacing
from .layers import SeasonResult
from .summary import sort_rows

REPORT_NAME = "season_report.html"
QUICKLOOK_PX = 160  # the longer side of each quicklook
MAX_FIELD_LINES = 10  # more lines make the chart unreadable; the table has every field
OVERLAY = 0.55  # how much the mask's colour covers the imagery
MAX_NOTES = 10  # the log has them all; the ranking's column has the figures


def write(
    rows: list, out_dir: str, season: SeasonResult | None = None, area_used: bool = False, path: str | None = None
) -> str:
    """Write the report (atomically) and return its path."""
    path = path or os.path.join(out_dir, REPORT_NAME)
    page = render(rows, season, area_used)
    with replacing(path, ".html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


def render(rows: list, season: SeasonResult | None, area_used: bool) -> str:
    rows = sort_rows(rows)
    ok = [r for r in rows if r.ok]
    parts = [
        _head(),
        "<h1>Cloud mask season report</h1>",
        f"<p>{len(ok)} of {len(rows)} product(s) masked; made {_now()}.</p>",
    ]
    parts += ["<h2>Clear fraction per date</h2>", _chart(ok, area_used)]
    parts += [
        "<h2>Dates ranked by clear fraction" + (" in the fields" if area_used else "") + "</h2>",
        _ranking(ok, area_used),
    ]
    parts += ["<h2>Season layers</h2>", _season_table(season)]
    failed = [r for r in rows if not r.ok]
    if failed:
        parts += ["<h2>Products that failed</h2>", _failed_table(failed)]
    parts += ["<h2>Quicklooks</h2>", _quicklooks(ok), "</body></html>"]
    return "\n".join(parts)


def _head() -> str:
    style = (
        "body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:.5em 0}"
        "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}td{white-space:nowrap}th{background:#eee}"
        "td.t{text-align:left}.note{color:#8a4b00}figure{display:inline-block;margin:4px;font-size:85%}"
        "img{image-rendering:pixelated}"
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Cloud mask season report</title>"
        f"<style>{style}</style></head><body>"
    )


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _pct(value) -> str:
    return "" if value is None else f"{100 * value:.1f} %"


def _date(row) -> str:
    return (row.sensed or row.product).replace("T", " ")


def _clear(row, area_used: bool):
    return row.area_clear_fraction if area_used else row.clear_fraction


# -- chart


def _chart(rows: list, area_used: bool) -> str:
    if not rows:
        return "<p>No product was masked: nothing to chart.</p>"
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return (
            "<p class='note'>No chart: matplotlib is not installed for this Python. Install it (on "
            "Debian/Ubuntu: python3-matplotlib) and run the batch again; the tables below hold the same "
            "figures.</p>"
        )
    figure = Figure(figsize=(8, 3.6), dpi=100)
    axes = figure.add_subplot(1, 1, 1)
    for label, points, style in _series(rows, area_used):
        dates = [_parse(d) for d, _ in points]
        axes.plot(dates, [100 * v for _, v in points], style, label=label, marker="o", markersize=3)
    axes.set_ylabel("clear (% of valid pixels)")
    axes.set_ylim(0, 100)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7, loc="best")
    figure.autofmt_xdate()
    figure.tight_layout()
    return f"<img alt='clear fraction per date' src='data:image/png;base64,{_figure_png(figure)}'>"


def _series(rows: list, area_used: bool) -> list[tuple[str, list, str]]:
    """(label, [(sensed, clear fraction)], line style): the scene per tile, then the area and its fields."""
    series = []
    dated = [r for r in rows if r.sensed]
    for tile in sorted({r.tile for r in dated}):
        points = [(r.sensed, r.clear_fraction) for r in dated if r.tile == tile and r.clear_fraction is not None]
        # With an area the masks cover the fields' bounding box only, not the scene.
        label = f"{tile} (fields' bounding box)" if area_used else f"scene {tile}"
        series.append((label.strip(), points, "-"))
    if area_used:
        series.append(
            (
                "all fields",
                [(r.sensed, r.area_clear_fraction) for r in dated if r.area_clear_fraction is not None],
                "--",
            )
        )
        names = list(dict.fromkeys(f.name for r in dated for f in r.fields))
        if len(names) > 1:
            for name in names[:MAX_FIELD_LINES]:
                points = [
                    (r.sensed, f.clear_fraction) for r in dated for f in r.fields if f.name == name and f.valid_pixels
                ]
                series.append((f"field {name}", points, ":"))
    return [s for s in series if s[1]]


def _parse(sensed: str) -> datetime:
    return datetime.strptime(sensed[:19], "%Y-%m-%dT%H:%M:%S")


def _figure_png(figure) -> str:
    name = os.path.join(tempfile.gettempdir(), f"cloudmask-chart-{uuid.uuid4().hex}.png")
    try:
        figure.savefig(name, format="png")
        with open(name, "rb") as handle:
            return base64.b64encode(handle.read()).decode("ascii")
    finally:
        if os.path.exists(name):
            os.remove(name)


# -- tables


def _table(header: list[str], body: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    lines = []
    for cells in body:
        lines.append(
            "<tr>"
            + "".join(
                f"<td>{html.escape(c)}</td>"
                if c[:1].isdigit()  # figures right-aligned
                else f"<td class='t'>{html.escape(c)}</td>"
                for c in cells
            )
            + "</tr>"
        )
    return f"<table><tr>{head}</tr>{''.join(lines)}</table>"


def _ranking(rows: list, area_used: bool) -> str:
    if not rows:
        return "<p>No product was masked.</p>"
    names = list(dict.fromkeys(f.name for r in rows for f in r.fields)) if area_used else []
    ranked = sorted(rows, key=lambda r: -(_clear(r, area_used) or 0.0))
    header = ["rank", "date", "tile", "clear in the fields" if area_used else "clear", "cloud", "shadow"]
    share = "cloud on persistent pixels" + (" (whole mask)" if area_used else "")
    header += [f"clear in {n}" for n in names] + [share]
    # With the SOURCE output, what the product's own mask flagged and what the models added to
    # it: a date whose product mask missed much is one to look at before trusting it.
    sourced = any(r.masked_fraction is not None for r in rows)
    header += ["flagged by the product mask", "added by the models"] if sourced else []
    header += ["mask"]
    body = []
    for rank, row in enumerate(ranked, start=1):
        cloud = row.area_cloud_fraction if area_used else row.cloud_fraction
        shadow = row.area_shadow_fraction if area_used else row.shadow_fraction
        per_field = {f.name: f for f in row.fields}
        cells = [str(rank), _date(row), row.tile, _pct(_clear(row, area_used)), _pct(cloud), _pct(shadow)]
        cells += [
            _pct(per_field[n].clear_fraction) if n in per_field and per_field[n].valid_pixels else "" for n in names
        ]
        cells += [_pct(row.persistent_cloud_share)]
        cells += [_pct(row.product_mask_fraction), _pct(row.model_added_fraction)] if sourced else []
        cells += [os.path.basename(row.mask)]
        body.append(cells)
    return _table(header, body)


def _season_table(season: SeasonResult | None) -> str:
    if season is None or not season.tiles:
        return "<p>No season layers (no product was masked).</p>"
    settings = season.settings
    intro = (
        f"<p>Per tile, from the masks of the season. Persistent cloud: a pixel called cloud on at least "
        f"{100 * settings.share:.0f} % of its valid dates, with at least {settings.min_dates} valid dates; real "
        "clouds move, so these are most likely bright ground taken for cloud.</p>"
    )
    header = [
        "tile",
        "dates",
        "valid dates per pixel (mean)",
        "clear dates per pixel (mean)",
        "cloud frequency",
        "persistent cloud",
        "pixels with too few dates",
        "layers",
    ]
    body = []
    for tile in season.tiles:
        undecided = tile.pixels - tile.decided
        body.append(
            [
                tile.tile or "-",
                str(tile.dates),
                f"{tile.mean_valid:.1f}",
                f"{tile.mean_clear:.1f}",
                _pct(tile.cloud_frequency),
                f"{tile.persistent} px ({_pct(tile.persistent_fraction)})",
                f"{undecided} px",
                f"{tile.name}_*.tif",
            ]
        )
    shown = season.messages[:MAX_NOTES]
    notes = "".join(f"<p class='note'>{html.escape(m)}</p>" for m in shown)
    if len(season.messages) > len(shown):
        notes += f"<p class='note'>... and {len(season.messages) - len(shown)} more in the batch's log.</p>"
    return intro + _table(header, body) + notes


def _failed_table(rows: list) -> str:
    return _table(
        ["input", "date", "tile", "reason"], [[os.path.basename(r.input), _date(r), r.tile, r.error] for r in rows]
    )


# -- quicklooks


def _quicklooks(rows: list) -> str:
    if not rows:
        return "<p>No product was masked.</p>"
    legend = " ".join(
        f"<span style='background:rgb{merge.CATEGORY_COLOURS[c][:3]};padding:0 8px'>&nbsp;</span> "
        f"{html.escape(merge.CATEGORY_NAMES[c])}"
        for c in (merge.CLOUD, merge.SHADOW)
    )
    figures = []
    for row in rows:
        caption = html.escape(f"{_date(row)} {row.tile}: {_pct(row.clear_fraction)} clear")
        try:
            png = _quicklook_png(row)
            figures.append(
                f"<figure><img alt='{caption}' src='data:image/png;base64,{png}'>"
                f"<figcaption>{caption}</figcaption></figure>"
            )
        except Exception as err:  # noqa: BLE001 - one missing picture must not lose the report
            figures.append(
                f"<figure><figcaption>{caption}<br><span class='note'>no quicklook: "
                f"{html.escape(str(err) or type(err).__name__)}</span></figcaption></figure>"
            )
    return f"<p>True colour, and the same with the mask over it: {legend}</p>" + "".join(figures)


def _quicklook_png(row) -> str:
    """True colour beside true colour with the mask; the mask alone when the imagery cannot be read."""
    mask_ds = gdal.Open(row.mask)
    if mask_ds is None:
        raise OSError(f"the mask {row.mask} cannot be read")
    width, height = _size(mask_ds.RasterXSize, mask_ds.RasterYSize)
    mask = mask_ds.GetRasterBand(1).ReadAsArray(
        buf_xsize=width, buf_ysize=height, resample_alg=gdal.GRIORA_NearestNeighbour
    )
    gdal.PushErrorHandler("CPLQuietErrorHandler")  # an input moved since: the picture shows the mask only
    try:
        rgb = _true_colour(row.input, mask_ds, width, height)
    finally:
        gdal.PopErrorHandler()
    if rgb is None:
        rgb = np.full((height, width, 3), 200, dtype=np.uint8)
    overlay = _overlay(rgb, mask)
    gap = np.full((height, 4, 3), 255, dtype=np.uint8)
    return _png(np.concatenate([rgb, gap, overlay], axis=1))


def _size(width: int, height: int) -> tuple[int, int]:
    scale = QUICKLOOK_PX / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _true_colour(source: str, mask_ds, width: int, height: int) -> np.ndarray | None:
    """Bands B04, B03, B02 of the input on the mask's extent, 0..255 (None when they cannot be read)."""
    from ..sentinel2 import product

    with tempfile.TemporaryDirectory(prefix="cloudmask-quicklook-") as tmp:
        stack = source
        if product.is_product(source):  # its bands as one stack; its mask is not needed here
            stack = os.path.join(tmp, "stack.vrt")
            product.prepare(source, stack, resolution=10.0)
        ds = gdal.Open(stack)
        if ds is None:
            return None
        names = detect_bands([ds.GetRasterBand(i + 1).GetDescription() for i in range(ds.RasterCount)])
        if not all(b in names for b in ("B04", "B03", "B02")):
            return None
        gt = mask_ds.GetGeoTransform()
        bounds = (gt[0], gt[3] + gt[5] * mask_ds.RasterYSize, gt[0] + gt[1] * mask_ds.RasterXSize, gt[3])
        bands = [names.index(b) + 1 for b in ("B04", "B03", "B02")]
        picked = gdal.Translate("", ds, format="VRT", bandList=bands)
        warped = gdal.Warp(
            "",
            picked,
            format="MEM",
            outputBounds=bounds,
            width=width,
            height=height,
            dstSRS=mask_ds.GetProjection() or None,
            resampleAlg="average",
        )
        if warped is None:
            return None
        rgb = warped.ReadAsArray().astype(np.float32)
    return np.clip(rgb / 3000.0 * 255.0, 0, 255).astype(np.uint8).transpose(1, 2, 0)


def _overlay(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = rgb.astype(np.float32)
    for category in (merge.CLOUD, merge.SHADOW):
        where = mask == category
        colour = np.array(merge.CATEGORY_COLOURS[category][:3], dtype=np.float32)
        out[where] = (1 - OVERLAY) * out[where] + OVERLAY * colour
    out[mask == merge.NODATA] = 0
    return out.astype(np.uint8)


def _png(rgb: np.ndarray) -> str:
    """A base64 PNG of an [h, w, 3] uint8 picture, by GDAL (no other library needed)."""
    height, width, _ = rgb.shape
    memory = gdal.GetDriverByName("MEM").Create("", width, height, 3, gdal.GDT_Byte)
    for index in range(3):
        memory.GetRasterBand(index + 1).WriteArray(rgb[:, :, index])
    name = f"/vsimem/cloudmask-quicklook-{uuid.uuid4().hex}.png"
    gdal.GetDriverByName("PNG").CreateCopy(name, memory)
    try:
        handle = gdal.VSIFOpenL(name, "rb")
        gdal.VSIFSeekL(handle, 0, 2)
        size = gdal.VSIFTellL(handle)
        gdal.VSIFSeekL(handle, 0, 0)
        data = gdal.VSIFReadL(1, size, handle)
        gdal.VSIFCloseL(handle)
    finally:
        gdal.Unlink(name)
    return base64.b64encode(data).decode("ascii")


def season_outputs(rows: list, out_dir: str, settings=None, area=None, feedback=None) -> tuple[SeasonResult, str]:
    """The batch's last step, the same in QGIS and on the command line: the season layers and the report.

    The season layers fill each row's persistent cloud share, so they come before the summary."""
    from .layers import build

    season = build(rows, out_dir, settings, area, feedback)
    return season, write(rows, out_dir, season, area_used=area is not None)
