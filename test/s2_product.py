"""A small but structurally faithful Sentinel-2 product built from the real sample scene.

No real L2A product can be downloaded in the tests, so this writes one the way
ESA lays it out: ``<name>.SAFE/MTD_MSIL2A.xml`` listing
``GRANULE/L2A_<tile>_.../IMG_DATA/R10m|R20m|R60m/<tile>_<time>_<band>_<res>m.jp2``
(lossless JPEG2000 at the native resolutions, plus the downsampled copies ESA
ships), the SCL at 20 and 60 m, the granule's ``MTD_TL.xml``, and the baseline
rules: from 04.00 digital numbers are stored +1000 (``BOA_ADD_OFFSET`` -1000),
before that without offset. An L1C variant has flat ``IMG_DATA`` with all 13
bands, ``RADIO_ADD_OFFSET`` and ``QI_DATA/MSK_CLASSI_B00.jp2``. The pixels
are a 240 x 240 crop (10 m) of test/data/sample/s2_l1c_13band.tif: 240 is a
multiple of 6 so the 20 and 60 m grids line up with the 10 m one, as in a real
tile (10980 px).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from osgeo import gdal
from samples import ARRAYS, L1C_STACK, require

TILE, SENSED, DATASTRIP = "T33TUK", "20230615T100559", "20230615T130000"
ROW, COL, SIZE = 120, 0, 240  # a window with about a third cloud (multiples of 6)
OFFSET = 1000  # what baseline 04.00 adds to stored digital numbers
BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
NATIVE = {
    "B01": 60,
    "B02": 10,
    "B03": 10,
    "B04": 10,
    "B05": 20,
    "B06": 20,
    "B07": 20,
    "B08": 10,
    "B8A": 20,
    "B09": 60,
    "B10": 60,
    "B11": 20,
    "B12": 20,
}
# Which bands an L2A product ships in each resolution folder (no B10; B08 only at 10 m).
L2A_FOLDERS = {
    10: ("B02", "B03", "B04", "B08"),
    20: ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B11", "B12", "SCL"),
    60: ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B09", "B11", "B12", "SCL"),
}


@dataclass
class Fixture:
    safe: Path  # the .SAFE folder
    zip: Path | None
    level: str
    baseline: str
    pixels: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)  # as stored in the files
    geotransform: tuple = ()

    @property
    def metadata(self) -> Path:
        return self.safe / f"MTD_MSI{self.level}.xml"


def sample_crop() -> tuple[np.ndarray, tuple, str]:
    """[13, 240, 240] uint16 digital numbers of the crop, its geotransform and CRS."""
    require(L1C_STACK, ARRAYS)
    ds = gdal.Open(str(L1C_STACK))
    data = ds.ReadAsArray(COL, ROW, SIZE, SIZE)
    gt = ds.GetGeoTransform()
    origin = (gt[0] + COL * gt[1], gt[1], 0.0, gt[3] + ROW * gt[5], 0.0, gt[5])
    return data, origin, ds.GetProjection()


def cloud_flags() -> np.ndarray:
    """s2cloudless's mask of the crop at 10 m (a plausible cloud layer for SCL / MSK_CLASSI)."""
    return np.load(ARRAYS)["cl_mask"][0, ROW : ROW + SIZE, COL : COL + SIZE].astype(bool)


def downsample(data: np.ndarray, factor: int) -> np.ndarray:
    """Block mean, as ESA's coarser copies are made (rounded to whole numbers)."""
    if factor == 1:
        return data
    rows, cols = data.shape[0] // factor, data.shape[1] // factor
    blocks = data.reshape(rows, factor, cols, factor).astype(np.float64)
    return np.round(blocks.mean(axis=(1, 3))).astype(data.dtype)


def scl_20m() -> np.ndarray:
    """An SCL at 20 m: vegetation, cloud where s2cloudless saw cloud, a shadow block, a nodata strip.

    Vegetation (4), cloud high probability (9) where s2cloudless saw cloud, a shadow block (3),
    and a nodata strip (0) along the left edge, as at a swath edge."""
    cloudy = downsample(cloud_flags().astype(np.uint8) * 100, 2) >= 50
    scl = np.where(cloudy, 9, 4).astype(np.uint8)
    scl[90:110, 60:100] = 3
    scl[:, :6] = 0
    return scl


def write_jp2(path: Path, data: np.ndarray, origin: tuple, resolution: int, projection: str) -> None:
    """Lossless JPEG2000, georeferenced as ESA's files are (GMLJP2 + GeoJP2 boxes)."""
    data = data if data.ndim == 3 else data[None]
    kind = gdal.GDT_Byte if data.dtype == np.uint8 else gdal.GDT_UInt16
    mem = gdal.GetDriverByName("MEM").Create("", data.shape[2], data.shape[1], data.shape[0], kind)
    mem.SetGeoTransform((origin[0], resolution, 0.0, origin[3], 0.0, -resolution))
    mem.SetProjection(projection)
    for i, plane in enumerate(data, start=1):
        mem.GetRasterBand(i).WriteArray(plane)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = gdal.GetDriverByName("JP2OpenJPEG").CreateCopy(
        str(path), mem, options=["QUALITY=100", "REVERSIBLE=YES", "YCC=NO"]
    )
    assert out is not None, gdal.GetLastErrorMsg()
    out = None
    aux = Path(str(path) + ".aux.xml")
    if aux.exists():
        aux.unlink()  # ESA's products have none


def _stored(values: np.ndarray, baseline: str) -> np.ndarray:
    """Digital numbers as a product of this baseline stores them (0 stays nodata)."""
    if float(baseline) < 4.0:
        return values
    return np.where(values > 0, values.astype(np.uint32) + OFFSET, 0).astype(np.uint16)


def _product_name(level: str, baseline: str) -> str:
    return f"S2B_MSI{level}_{SENSED}_N{baseline.replace('.', '')}_R022_{TILE}_{DATASTRIP}"


def _spectral_list() -> str:
    return "".join(
        f'<Spectral_Information bandId="{i}" physicalBand="{b.replace("B0", "B")}">'
        f"<RESOLUTION>{NATIVE[b]}</RESOLUTION></Spectral_Information>"
        for i, b in enumerate(BANDS)
    )


def _metadata_xml(level: str, baseline: str, name: str, images: list[str]) -> str:
    """The product metadata with the fields readers use (GDAL's SENTINEL2 driver and ours)."""
    files = "".join(f"<IMAGE_FILE>{image}</IMAGE_FILE>" for image in images)
    granule = f"S2B_OPER_MSI_{level}_TL_2BPS_{DATASTRIP}_A032749_{TILE}_N{baseline}"
    new = float(baseline) >= 4.0
    if level == "L2A":
        root, schema = "Level-2A_User_Product", "User_Product_Level-2A"
        quantification = (
            '<QUANTIFICATION_VALUES_LIST><BOA_QUANTIFICATION_VALUE unit="none">10000'
            '</BOA_QUANTIFICATION_VALUE><AOT_QUANTIFICATION_VALUE unit="none">1000.0'
            '</AOT_QUANTIFICATION_VALUE><WVP_QUANTIFICATION_VALUE unit="cm">1000.0'
            "</WVP_QUANTIFICATION_VALUE></QUANTIFICATION_VALUES_LIST>"
        )
        offsets = (
            (
                "<BOA_ADD_OFFSET_VALUES_LIST>"
                + "".join(f'<BOA_ADD_OFFSET band_id="{i}">-{OFFSET}</BOA_ADD_OFFSET>' for i in range(13))
                + "</BOA_ADD_OFFSET_VALUES_LIST>"
            )
            if new
            else ""
        )
        product_type = "S2MSI2A"
    else:
        root, schema = "Level-1C_User_Product", "User_Product_Level-1C"
        quantification = '<QUANTIFICATION_VALUE unit="none">10000</QUANTIFICATION_VALUE>'
        offsets = (
            (
                "<Radiometric_Offset_List>"
                + "".join(f'<RADIO_ADD_OFFSET band_id="{i}">-{OFFSET}</RADIO_ADD_OFFSET>' for i in range(13))
                + "</Radiometric_Offset_List>"
            )
            if new
            else ""
        )
        product_type = "S2MSI1C"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<n1:{root} xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/{schema}.xsd">
<n1:General_Info>
<Product_Info>
<PRODUCT_START_TIME>2023-06-15T10:05:59.024Z</PRODUCT_START_TIME>
<PRODUCT_STOP_TIME>2023-06-15T10:05:59.024Z</PRODUCT_STOP_TIME>
<PRODUCT_URI>{name}.SAFE</PRODUCT_URI>
<PROCESSING_LEVEL>Level-{level[1:]}</PROCESSING_LEVEL>
<PRODUCT_TYPE>{product_type}</PRODUCT_TYPE>
<PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>
<GENERATION_TIME>2023-06-15T13:00:00.000000Z</GENERATION_TIME>
<Datatake datatakeIdentifier="GS2B_{SENSED}_032749_N{baseline.replace(".", "")}">
<SPACECRAFT_NAME>Sentinel-2B</SPACECRAFT_NAME>
<DATATAKE_SENSING_START>2023-06-15T10:05:59.024Z</DATATAKE_SENSING_START>
<SENSING_ORBIT_NUMBER>22</SENSING_ORBIT_NUMBER>
</Datatake>
<Query_Options completeSingleTile="true"><PRODUCT_FORMAT>SAFE_COMPACT</PRODUCT_FORMAT></Query_Options>
<Product_Organisation>
<Granule_List>
<Granule datastripIdentifier="S2B_OPER_MSI_{level}_DS_{DATASTRIP}" granuleIdentifier="{granule}" imageFormat="JPEG2000">
{files}
</Granule>
</Granule_List>
</Product_Organisation>
</Product_Info>
<Product_Image_Characteristics>
<Special_Values><SPECIAL_VALUE_TEXT>NODATA</SPECIAL_VALUE_TEXT><SPECIAL_VALUE_INDEX>0</SPECIAL_VALUE_INDEX></Special_Values>
<Special_Values><SPECIAL_VALUE_TEXT>SATURATED</SPECIAL_VALUE_TEXT><SPECIAL_VALUE_INDEX>65535</SPECIAL_VALUE_INDEX></Special_Values>
{quantification}
{offsets}
<Spectral_Information_List>{_spectral_list()}</Spectral_Information_List>
</Product_Image_Characteristics>
</n1:General_Info>
</n1:{root}>
"""


def _tile_xml(level: str, projection_epsg: int, origin: tuple, size: int) -> str:
    sizes = "".join(
        f'<Size resolution="{r}"><NROWS>{size * 10 // r}</NROWS><NCOLS>{size * 10 // r}</NCOLS></Size>'
        for r in (10, 20, 60)
    )
    positions = "".join(
        f'<Geoposition resolution="{r}"><ULX>{origin[0]:.0f}</ULX><ULY>{origin[3]:.0f}</ULY>'
        f"<XDIM>{r}</XDIM><YDIM>-{r}</YDIM></Geoposition>"
        for r in (10, 20, 60)
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-{level[1:]}_Tile_ID xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/S2_PDI_Level-{level[1:]}_Tile_Metadata.xsd">
<n1:Geometric_Info><Tile_Geocoding metadataLevel="Brief">
<HORIZONTAL_CS_NAME>WGS84 / UTM zone 33N</HORIZONTAL_CS_NAME>\
<HORIZONTAL_CS_CODE>EPSG:{projection_epsg}</HORIZONTAL_CS_CODE>
{sizes}{positions}
</Tile_Geocoding></n1:Geometric_Info>
</n1:Level-{level[1:]}_Tile_ID>
"""


def build_product(folder: Path, level: str = "L2A", baseline: str = "04.00", zipped: bool = True) -> Fixture:
    """Write the product under ``folder`` (and ``<name>.zip`` beside it when ``zipped``)."""
    data, origin, projection = sample_crop()
    name = _product_name(level, baseline)
    safe = folder / f"{name}.SAFE"
    granule = f"{level}_{TILE}_A032749_{SENSED}"
    fixture = Fixture(safe=safe, zip=None, level=level, baseline=baseline, geotransform=origin)
    images = []
    by_band = {b: data[i] for i, b in enumerate(BANDS)}
    by_band["SCL"] = None
    if level == "L2A":
        for resolution, bands in L2A_FOLDERS.items():
            for band in bands:
                if band == "SCL":
                    values = scl_20m() if resolution == 20 else scl_20m()[::3, ::3]
                else:
                    values = _stored(downsample(by_band[band], resolution // 10), baseline)
                relative = f"GRANULE/{granule}/IMG_DATA/R{resolution}m/{TILE}_{SENSED}_{band}_{resolution}m"
                write_jp2(safe / f"{relative}.jp2", values, origin, resolution, projection)
                fixture.pixels[(band, resolution)] = values
                images.append(relative)
    else:
        for band in BANDS:
            resolution = NATIVE[band]
            values = _stored(downsample(by_band[band], resolution // 10), baseline)
            relative = f"GRANULE/{granule}/IMG_DATA/{TILE}_{SENSED}_{band}"
            write_jp2(safe / f"{relative}.jp2", values, origin, resolution, projection)
            fixture.pixels[(band, resolution)] = values
            images.append(relative)
        if float(baseline) >= 4.0:
            opaque = downsample(cloud_flags().astype(np.uint8) * 100, 6) >= 50
            classi = np.stack([opaque, np.zeros_like(opaque), np.zeros_like(opaque)]).astype(np.uint8)
            classi[1, :4, :] = 1  # a cirrus strip along the top
            write_jp2(safe / f"GRANULE/{granule}/QI_DATA/MSK_CLASSI_B00.jp2", classi, origin, 60, projection)
            fixture.pixels[("MSK_CLASSI", 60)] = classi
    (safe / f"MTD_MSI{level}.xml").write_text(_metadata_xml(level, baseline, name, images), encoding="utf-8")
    (safe / "GRANULE" / granule / "MTD_TL.xml").write_text(_tile_xml(level, 32633, origin, SIZE), encoding="utf-8")
    (safe / "manifest.safe").write_text("<xfdu:XFDU/>\n", encoding="utf-8")
    if zipped:
        fixture.zip = folder / f"{name}.zip"
        # Stored, not deflated: JPEG2000 does not compress further (ESA's zips do the same).
        with zipfile.ZipFile(fixture.zip, "w", zipfile.ZIP_STORED) as archive:
            for path in sorted(safe.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(folder).as_posix())
    return fixture
