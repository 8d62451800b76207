"""The pictures of the season report in docs/usage.md, cut from a real report.

The sample season (test/season_scene.py: 12 dates of the sample scene with real clouds
moved about and a patch the model calls cloud on every date) runs through the batch with
two fields, one around the patch; the report's top and one date's quicklook are saved:

    .venv/bin/python docs/make_season_pictures.py

season_quicklook.png: one date;
season_report.png: the top of the report as QGIS's web view (QtWebKit) draws it, offscreen.
"""

import base64
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "test")]
import plugin_root

plugin_root.import_root()

from osgeo import osr
from season_scene import PATCH, build_season

from cloud_mask_improver.core import area as areas
from cloud_mask_improver.core.runtime import deps
from cloud_mask_improver.core.season import batch, report


def _square(gt, row: int, col: int, size: int) -> str:
    x0, y0 = gt[0] + col * gt[1], gt[3] + row * gt[5]
    x1, y1 = x0 + size * gt[1], y0 + size * gt[5]
    return f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"


def _screenshot(html: str, png: Path, width: int = 1000, height: int = 1250) -> None:
    """The report's top as a web view draws it (QtWebKit, as QGIS's Python ships it)."""
    import os

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qgis.PyQt.QtCore import QSize, QUrl
    from qgis.PyQt.QtGui import QImage, QPainter
    from qgis.PyQt.QtWebKitWidgets import QWebPage
    from qgis.PyQt.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    page, loaded = QWebPage(), []
    page.loadFinished.connect(loaded.append)
    page.mainFrame().load(QUrl.fromLocalFile(html))
    while not loaded:
        app.processEvents()
    page.setViewportSize(QSize(width, height))
    image = QImage(page.viewportSize(), QImage.Format.Format_RGB32)
    image.fill(0xFFFFFFFF)
    painter = QPainter(image)
    page.mainFrame().render(painter)
    painter.end()
    image.save(str(png))
    print("wrote", png)


def main() -> None:
    deps.ensure_on_path()
    from osgeo import gdal

    with tempfile.TemporaryDirectory() as tmp:
        season = build_season(Path(tmp) / "stacks")
        ds = gdal.Open(str(season.stacks[0]))
        gt, srs = ds.GetGeoTransform(), osr.SpatialReference(ds.GetProjection())
        row, col, size = PATCH
        area = areas.Area(
            (_square(gt, row - 4, col - 4, size + 8), _square(gt, 140, 140, size + 8)),
            srs.ExportToWkt(),
            ("patch", "plain"),
            "fields",
        )
        out = Path(tmp) / "out"
        batch.prepare_output_folder(str(out))
        items = batch.plan_items([str(p) for p in season.stacks])
        options = batch.BatchOptions(batch.template(cloud_models=("ukis-6b-l2a",)))
        rows = batch.run_sequential(items, options, str(out), area)
        _, path = report.season_outputs(rows, str(out), area=area)
        page = Path(path).read_text(encoding="utf-8")
        _screenshot(path, ROOT / "docs" / "season_report.png")
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    for name, data in (("season_quicklook.png", images[3]),):
        (ROOT / "docs" / name).write_bytes(base64.b64decode(data))
        print("wrote", ROOT / "docs" / name)


if __name__ == "__main__":
    main()
