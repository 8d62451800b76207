"""A PNG of a scene before and after Apply cloud mask, side by side (docs/apply_mask.png).

True colour (B04 B03 B02) as scripts/quicklook.py draws it; the pixels the mask removed are
drawn as a grey checkerboard, the way image editors show transparency.

Usage: before_after.py S2_RASTER MASKED_RASTER OUT.png [STEP]
(STEP: keep every STEP-th pixel, default 2, so the picture stays small in git).
"""

import sys
from pathlib import Path

import numpy as np
from osgeo import gdal

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quicklook import true_colour  # after the path is set

GAP = 8  # white pixels between the two pictures


def removed(path: str) -> np.ndarray:
    """Where the masked raster holds its nodata (any band)."""
    ds = gdal.Open(path)
    band = ds.GetRasterBand(1)
    values, nodata = band.ReadAsArray(), band.GetNoDataValue()
    return np.isnan(values) if nodata is None or np.isnan(nodata) else values == nodata


def checkerboard(shape: tuple[int, int], square: int = 8) -> np.ndarray:
    rows, cols = np.indices(shape)
    return np.where(((rows // square) + (cols // square)) % 2 == 0, 205, 235).astype(np.float32)


def main(s2: str, masked: str, out: str, step: int = 2) -> None:
    before = true_colour(s2)
    after = true_colour(masked)
    holes = removed(masked)
    after[:, holes] = checkerboard(holes.shape)[holes]
    before, after = before[:, ::step, ::step], after[:, ::step, ::step]
    height, width = before.shape[1:]
    picture = np.full((3, height, 2 * width + GAP), 255, dtype=np.uint8)
    picture[:, :, :width] = before.astype(np.uint8)
    picture[:, :, width + GAP :] = after.astype(np.uint8)
    mem = gdal.GetDriverByName("MEM").Create("", picture.shape[2], height, 3, gdal.GDT_Byte)
    for i in range(3):
        mem.GetRasterBand(i + 1).WriteArray(picture[i])
    gdal.GetDriverByName("PNG").CreateCopy(out, mem)
    aux = Path(out + ".aux.xml")
    if aux.exists():
        aux.unlink()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 2)
