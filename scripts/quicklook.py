"""A PNG quicklook: true colour (B04 B03 B02) with the mask drawn over it.

Usage: quicklook.py S2_RASTER MASK OUT.png
"""

import sys
from pathlib import Path

import numpy as np
from osgeo import gdal

sys.path.insert(0, str(Path(__file__).resolve().parent))
import plugin_root

plugin_root.import_root()
from cloud_mask_improver.core import merge
from cloud_mask_improver.core.bands import detect_bands

gdal.UseExceptions()  # our own process: say so, or GDAL >= 3.9 warns that 4.0 will change the default


def true_colour(path: str) -> np.ndarray:
    ds = gdal.Open(path)
    names = detect_bands([ds.GetRasterBand(i + 1).GetDescription() for i in range(ds.RasterCount)])
    rgb = np.stack(
        [ds.GetRasterBand(names.index(b) + 1).ReadAsArray().astype(np.float32) for b in ("B04", "B03", "B02")]
    )
    return np.clip(rgb / 3000.0 * 255.0, 0, 255)


def main(s2: str, mask_path: str, out: str) -> None:
    rgb = true_colour(s2)
    mask = gdal.Open(mask_path).ReadAsArray()
    for value, alpha in ((merge.CLOUD, 0.45), (merge.SHADOW, 0.45)):
        colour = np.asarray(merge.CATEGORY_COLOURS[value][:3], dtype=np.float32).reshape(3, 1)
        where = mask == value
        rgb[:, where] = (1 - alpha) * rgb[:, where] + alpha * colour
    mem = gdal.GetDriverByName("MEM").Create("", rgb.shape[2], rgb.shape[1], 3, gdal.GDT_Byte)
    for i in range(3):
        mem.GetRasterBand(i + 1).WriteArray(rgb[i].astype(np.uint8))
    gdal.GetDriverByName("PNG").CreateCopy(out, mem)
    aux = Path(out + ".aux.xml")
    if aux.exists():
        aux.unlink()


if __name__ == "__main__":
    main(*sys.argv[1:4])
