"""A PNG of the SOURCE output as QGIS draws it (the plugin's own style) over the imagery.

With its legend: the picture in docs/usage.md.

Usage: source_picture.py S2_RASTER SOURCE OUT.png
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import plugin_root

plugin_root.import_root()
from osgeo import gdal
from qgis.core import (
    QgsApplication,
    QgsContrastEnhancement,
    QgsMapRendererCustomPainterJob,
    QgsMapSettings,
    QgsMultiBandColorRenderer,
    QgsRasterLayer,
)
from qgis.PyQt.QtCore import QRectF, QSize, Qt
from qgis.PyQt.QtGui import QColor, QFont, QImage, QPainter

from cloud_mask_improver.algorithms.styling import source_renderer
from cloud_mask_improver.core.bands import detect_bands

LEGEND_WIDTH = 360


def true_colour(path: str) -> QgsRasterLayer:
    """The Sentinel-2 raster as true colour (B04 B03 B02), stretched 0..3000 as quicklook.py does."""
    layer = QgsRasterLayer(path, "imagery")
    provider = layer.dataProvider()
    ds = gdal.Open(path)
    names = detect_bands([ds.GetRasterBand(i + 1).GetDescription() for i in range(ds.RasterCount)])
    bands = [names.index(b) + 1 for b in ("B04", "B03", "B02")]
    renderer = QgsMultiBandColorRenderer(provider, *bands)
    stretches = []
    for band in bands:
        stretch = QgsContrastEnhancement(provider.dataType(band))
        stretch.setContrastEnhancementAlgorithm(
            QgsContrastEnhancement.ContrastEnhancementAlgorithm.StretchToMinimumMaximum
        )
        stretch.setMinimumValue(0)
        stretch.setMaximumValue(3000)
        stretches.append(stretch)
    renderer.setRedContrastEnhancement(stretches[0])
    renderer.setGreenContrastEnhancement(stretches[1])
    renderer.setBlueContrastEnhancement(stretches[2])
    layer.setRenderer(renderer)
    return layer


def draw_legend(painter: QPainter, renderer, left: int) -> None:
    painter.setFont(QFont("DejaVu Sans", 11))
    y = 16
    for item in renderer.classes():
        painter.fillRect(QRectF(left + 12, y, 22, 16), QColor(255, 255, 255))
        painter.fillRect(QRectF(left + 12, y, 22, 16), item.color)
        painter.setPen(QColor(0, 0, 0))
        painter.drawRect(QRectF(left + 12, y, 22, 16))
        painter.drawText(QRectF(left + 42, y - 2, LEGEND_WIDTH - 48, 40), int(Qt.TextFlag.TextWordWrap), item.label)
        y += 44


def main(s2: str, source_path: str, out: str) -> None:
    app = QgsApplication([], False)
    app.initQgis()
    imagery = true_colour(s2)
    source = QgsRasterLayer(source_path, "source")
    source.setRenderer(source_renderer(source))
    settings = QgsMapSettings()
    settings.setLayers([source, imagery])
    settings.setDestinationCrs(imagery.crs())
    settings.setExtent(imagery.extent())
    size = QSize(imagery.width(), imagery.height())
    settings.setOutputSize(size)
    settings.setBackgroundColor(QColor(255, 255, 255))
    image = QImage(size.width() + LEGEND_WIDTH, size.height(), QImage.Format.Format_ARGB32)
    image.fill(QColor(255, 255, 255))
    painter = QPainter(image)
    job = QgsMapRendererCustomPainterJob(settings, painter)
    job.start()
    job.waitForFinished()
    draw_legend(painter, source.renderer(), size.width())
    painter.end()
    image.save(out)
    print("wrote", out)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
