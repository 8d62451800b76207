"""Sentinel-2 products as users download them, turned into what the engine reads.

Products are ``.SAFE`` folders, their ``.zip``, their ``MTD_MSIL2A.xml`` / ``MTD_MSIL1C.xml``,
and GDAL's SENTINEL2 subdataset URIs.

A product becomes what the engine reads: a band stack on one grid (band
descriptions = band names, metadata items for the processing level, baseline
and radiometric offset that ``pipeline`` reads) and the product's own mask
coded as an SCL raster. All file access goes through GDAL's virtual file
system, so a ``.zip`` is read in place through ``/vsizip/`` and never unpacked.
"""

from __future__ import annotations

import os
import re
import tempfile
import xml.etree.ElementTree as ET  # nosec B405 - holds the tree only: parse_metadata_xml parses, DTDs refused
import zipfile
from dataclasses import dataclass, field
from html import escape as html_escape
from typing import NoReturn
from xml.parsers import expat

import numpy as np
from osgeo import gdal

from ..bands import ALL_BANDS, FARMVIBES_BANDS
from ..errors import NoProductMask, ProductError
from ..raster import GTIFF_OPTIONS, gdal_try, require_geotiff_name, write_array
from ..staging import atomic_outputs, check_replaceable, discard, partial_path, stage

# Native resolution of each band (metres).
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
    "SCL": 20,
}
RESOLUTIONS = (10, 20, 60)
METADATA_FILES = ("MTD_MSIL2A.xml", "MTD_MSIL1C.xml")
# ESA's offset since baseline 04.00, used only if such a product lacks the list.
DEFAULT_OFFSET = -1000.0
# SCL classes used to code an L1C product's own mask so one decoder (kind "scl") serves both levels.
SCL_NODATA, SCL_UNCLASSIFIED, SCL_CLOUD_HIGH, SCL_CIRRUS, SCL_SNOW = 0, 7, 9, 10, 11
MASK_KIND_KEY = "PRODUCT_MASK_KIND"
PRODUCT_MASK_KEY = "S2_PRODUCT_MASK"
URI = re.compile(r"^SENTINEL2_L(1C|2A):(.+):(\w+):(EPSG_\d+|\w+)$", re.IGNORECASE)
IMAGE_NAME = re.compile(r"_(B\d{2}|B8A|SCL|AOT|WVP|TCI)(?:_(\d{2})m)?$")


@dataclass
class Product:
    metadata_path: str  # a GDAL path: may start with /vsizip/
    level: str  # "L2A" or "L1C"
    baseline: str
    offsets: dict[str, float]  # band name -> additive offset (empty: none)
    quantification: float
    images: dict[tuple[str, int], str] = field(default_factory=dict)  # (band, metres) -> path
    nodata: float = 0.0
    name: str = ""

    @property
    def bands(self) -> tuple[str, ...]:
        """The stack's bands: FarmVibes.AI's 12 for L2A (which has no B10), all 13 for L1C."""
        return FARMVIBES_BANDS if self.level == "L2A" else ALL_BANDS

    @property
    def offset_key(self) -> str:
        return "BOA_ADD_OFFSET" if self.level == "L2A" else "RADIO_ADD_OFFSET"


# -- finding and reading the metadata


def _vsi(path: str) -> str:
    """A path GDAL can read: a plain ``.zip`` goes through ``/vsizip/``."""
    path = str(path)
    if path.lower().endswith(".zip") and not path.startswith("/vsi"):
        return "/vsizip/" + os.path.abspath(path)
    return path.rstrip("/\\") if len(path) > 1 else path


def _is_dir(path: str) -> bool:
    stat = gdal.VSIStatL(path)
    return stat is not None and stat.IsDirectory()


def _exists(path: str) -> bool:
    return gdal.VSIStatL(path) is not None


def _metadata_in(folder: str) -> str | None:
    """The product metadata file in a folder, or in its one ``.SAFE`` subfolder (a zip's layout)."""
    entries = gdal.ReadDir(folder) or []
    for name in METADATA_FILES:
        if name in entries:
            return f"{folder}/{name}"
    for entry in entries:
        if entry.upper().endswith(".SAFE"):
            found = _metadata_in(f"{folder}/{entry}")
            if found:
                return found
    return None


def find_metadata(path: str) -> str | None:
    """The ``MTD_MSIL*.xml`` of a product path (folder, zip or the file itself), or None."""
    path = _vsi(path)
    if os.path.basename(path) in METADATA_FILES:
        return path if _exists(path) else None
    lowered = path.lower()
    if lowered.endswith((".tif", ".tiff", ".vrt", ".jp2", ".img")):
        return None  # a raster file: never a product (saves listing folders)
    if _is_dir(path):
        return _metadata_in(path)
    return None


def parse_uri(source: str) -> tuple[str, float] | None:
    """``SENTINEL2_L2A:<MTD path>:10m:EPSG_32633`` -> (MTD path, 10.0); None for other sources."""
    match = URI.match(str(source))
    if not match:
        return None
    path, kind = match.group(2).strip('"'), match.group(3).lower()
    resolution = float(kind[:-1]) if re.fullmatch(r"\d+m", kind) else 10.0  # TCI/PREVIEW: the 10 m grid
    return path, resolution


def is_product(source: str) -> bool:
    """True for a product path or a SENTINEL2 subdataset URI (cheap for ordinary rasters)."""
    if not source or not isinstance(source, str):
        return False
    return parse_uri(source) is not None or find_metadata(source) is not None


def zip_problem(source: str) -> str:
    """Why a ``.zip`` given as a product is none, in words a user can act on.

    "" when the source is no zip file or is a product.

    A half-downloaded zip lacks its central directory, so GDAL lists nothing in it and it
    would look like "not a Sentinel-2 product" although the user gave exactly the .zip asked
    for: say it is damaged and must be downloaded again. A whole zip without the metadata
    file is another kind of product (Sentinel-1, Landsat, a Level-1B...)."""
    if not str(source).lower().endswith(".zip") or not os.path.isfile(source):
        return ""
    try:
        with zipfile.ZipFile(source) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return (
            f"'{source}' is damaged or incomplete: it is not a whole zip file (an interrupted "
            "download?). Download the product again."
        )
    if any(os.path.basename(name) in METADATA_FILES for name in names):
        return ""
    return (
        f"'{source}' is not a Sentinel-2 Level-1C or Level-2A product: the zip holds no "
        "MTD_MSIL2A.xml or MTD_MSIL1C.xml (a product of another satellite or level?). "
        "Give a Sentinel-2 L1C or L2A product, or leave this file out."
    )


def _read_text(path: str) -> bytes:
    handle, _ = gdal_try(gdal.VSIFOpenL, path, "rb")
    if handle is None:
        raise ProductError(f"Cannot read the product metadata '{path}'.")
    try:
        gdal.VSIFSeekL(handle, 0, 2)
        size = gdal.VSIFTellL(handle)
        gdal.VSIFSeekL(handle, 0, 0)
        return gdal.VSIFReadL(1, size, handle)
    finally:
        gdal.VSIFCloseL(handle)


class _DocumentType(Exception):
    """Raised from inside expat when the document declares a DTD (stops it at once)."""


def _refuse_document_type(*_args) -> NoReturn:
    raise _DocumentType()


def parse_metadata_xml(data: bytes, path: str) -> ET.Element:
    """The product metadata's element tree; a file that declares a document type is refused.

    ESA's metadata files never have a DTD. One that does is hostile or not ESA's: its entities
    can expand a few hundred bytes into gigabytes ("billion laughs") or read other local files
    (external entities). expat stops at the declaration itself, before any entity is defined,
    whatever its own limits are (older expat versions, as some QGIS builds ship, have none).
    """
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate(namespace_separator="}")
    parser.buffer_text = True
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_document_type
    parser.EntityDeclHandler = _refuse_document_type
    parser.ExternalEntityRefHandler = _refuse_document_type
    # ElementTree's tag spelling, {namespace}name, from expat's namespace}name.
    parser.StartElementHandler = lambda tag, attrs: builder.start("{" + tag if "}" in tag else tag, attrs)
    parser.EndElementHandler = lambda tag: builder.end("{" + tag if "}" in tag else tag)
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
        return builder.close()
    except _DocumentType:
        raise ProductError(
            f"The product metadata '{path}' declares a document type (DTD) or entities, which "
            "Sentinel-2 metadata never does: it is refused, as such a file can exhaust memory or "
            "read other files. Download the product again from its original source."
        ) from None
    except expat.ExpatError as err:
        raise ProductError(f"The product metadata '{path}' is not valid XML: {err}.") from err


def _local(tag: str) -> str:
    """Tag name without its XML namespace (ESA's namespaces change between versions)."""
    return tag.rsplit("}", 1)[-1]


def _first(root: ET.Element, name: str) -> str | None:
    for element in root.iter():
        if _local(element.tag) == name and element.text:
            return element.text.strip()
    return None


def _offsets(root: ET.Element, level: str, baseline: str) -> dict[str, float]:
    """Offsets per band name. The list exists since baseline 04.00; before it there is none."""
    tag = "BOA_ADD_OFFSET" if level == "L2A" else "RADIO_ADD_OFFSET"
    offsets = {}
    for element in root.iter():
        band_id = element.get("band_id")
        if _local(element.tag) == tag and band_id is not None and element.text:
            offsets[ALL_BANDS[int(band_id)]] = float(element.text)
    if not offsets and _baseline_number(baseline) >= 4.0:
        offsets = {band: DEFAULT_OFFSET for band in ALL_BANDS}
    return offsets


def _baseline_number(baseline: str) -> float:
    try:
        return float(baseline)
    except ValueError:
        return 0.0


def _images(root: ET.Element, folder: str) -> dict[tuple[str, int], str]:
    """Band files listed in the metadata, keyed by (band, resolution)."""
    images = {}
    for element in root.iter():
        # IMAGE_FILE in current products, IMAGE_FILE_2A in early L2A ones.
        if not _local(element.tag).startswith("IMAGE_FILE") or not element.text:
            continue
        relative = element.text.strip()
        match = IMAGE_NAME.search(relative)
        if not match or match.group(1) not in NATIVE:
            continue
        band = match.group(1)
        resolution = int(match.group(2)) if match.group(2) else NATIVE[band]
        images[(band, resolution)] = f"{folder}/{relative}.jp2"
    return images


def read_product(source: str) -> Product:
    """Parse a product (folder, zip, MTD file or SENTINEL2 URI) into what we need of it."""
    uri = parse_uri(source)
    metadata = find_metadata(uri[0] if uri else source)
    if metadata is None:
        raise ProductError(
            f"'{source}' is not a Sentinel-2 product: no MTD_MSIL2A.xml or "
            "MTD_MSIL1C.xml in it. Give the .SAFE folder, its .zip or its MTD file."
        )
    root = parse_metadata_xml(_read_text(metadata), metadata)
    level = "L2A" if os.path.basename(metadata) == "MTD_MSIL2A.xml" else "L1C"
    baseline = _first(root, "PROCESSING_BASELINE") or "00.00"
    quantification = _first(root, "BOA_QUANTIFICATION_VALUE" if level == "L2A" else "QUANTIFICATION_VALUE")
    nodata = 0.0
    for element in root.iter():
        if _local(element.tag) == "Special_Values" and _first(element, "SPECIAL_VALUE_TEXT") == "NODATA":
            nodata = float(_first(element, "SPECIAL_VALUE_INDEX") or 0)
    folder = os.path.dirname(metadata)
    product = Product(
        metadata_path=metadata,
        level=level,
        baseline=baseline,
        offsets=_offsets(root, level, baseline),
        quantification=float(quantification or 10000),
        nodata=nodata,
        images=_images(root, folder),
        name=os.path.basename(folder),
    )
    missing = [b for b in product.bands if not any(k[0] == b for k in product.images)]
    if missing:
        raise ProductError(
            f"The product '{source}' lists no image for band {', '.join(missing)}: "
            "it is incomplete or not a full L1C/L2A product."
        )
    return product


# -- the grid and the VRTs


@dataclass(frozen=True)
class Grid:
    """A north-up grid in the product's CRS."""

    xmin: float
    ymax: float
    resolution: float
    width: int
    height: int
    projection: str

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return (
            self.xmin,
            self.ymax - self.height * self.resolution,
            self.xmin + self.width * self.resolution,
            self.ymax,
        )


def _open(path: str, what: str) -> gdal.Dataset:
    ds, detail = gdal_try(gdal.Open, path)
    if ds is None:
        raise ProductError(
            f"Cannot open the product's {what} '{path}': {detail}. Is the product complete (download not interrupted)?"
        )
    return ds


def product_grid(product: Product, resolution: float, bounds: tuple[float, float, float, float] | None = None) -> Grid:
    """The tile's grid at ``resolution``, cut to ``bounds`` snapped outward onto the grid.

    ``bounds`` is xmin, ymin, xmax, ymax in the product's CRS; snapping outward keeps the pixels
    aligned with the product's."""
    if resolution <= 0:
        raise ProductError(f"The resolution must be positive, got {resolution}.")
    reference = next(p for (b, r), p in sorted(product.images.items(), key=lambda kv: kv[0][1]) if b in product.bands)
    ds = _open(reference, "band image")
    gt = ds.GetGeoTransform()
    tile = (gt[0], gt[3] + gt[5] * ds.RasterYSize, gt[0] + gt[1] * ds.RasterXSize, gt[3])
    xmin, ymin, xmax, ymax = tile
    if bounds is not None:
        xmin, ymin = max(xmin, bounds[0]), max(ymin, bounds[1])
        xmax, ymax = min(xmax, bounds[2]), min(ymax, bounds[3])
        if xmin >= xmax or ymin >= ymax:
            raise ProductError(
                "The extent does not overlap the product's tile. Choose an extent "
                "inside the scene (in any CRS; it is reprojected to the tile's)."
            )
        # Snap outward to whole pixels counted from the tile's corner.
        xmin = tile[0] + np.floor((xmin - tile[0]) / resolution) * resolution
        ymax = tile[3] - np.floor((tile[3] - ymax) / resolution) * resolution
        xmax = min(tile[2], tile[0] + np.ceil((xmax - tile[0]) / resolution) * resolution)
        ymin = max(tile[1], tile[3] - np.ceil((tile[3] - ymin) / resolution) * resolution)
    width = max(1, int(np.rint((xmax - xmin) / resolution)))
    height = max(1, int(np.rint((ymax - ymin) / resolution)))
    return Grid(float(xmin), float(ymax), float(resolution), width, height, ds.GetProjection())


def escape(text: str) -> str:
    """Text for the VRT's XML: & < > as entities.

    As xml.sax.saxutils.escape does, without importing its module: security scanners flag it
    for parsing, which this code does not use it for."""
    return html_escape(text, quote=False)


def _source_xml(path: str, grid: Grid, resampling: str, nodata: float | None) -> str:
    """One VRT source: the part of ``path`` under the grid, resampled onto it."""
    ds = _open(path, "band image")
    gt = ds.GetGeoTransform()
    x0, y0, x1, y1 = grid.bounds
    src = ((x0 - gt[0]) / gt[1], (y1 - gt[3]) / gt[5], (x1 - x0) / gt[1], (y0 - y1) / gt[5])
    nodata_xml = f"<NODATA>{nodata:g}</NODATA>" if nodata is not None else ""
    # JPEG2000 files carry wavelet resolution levels that GDAL would read as overviews when
    # downsampling; OVERVIEW_LEVEL=NONE makes "average" a true block mean, as ESA's copies are.
    return (
        f'<ComplexSource resampling="{resampling}">'
        f"{_source_name(path)}"
        '<OpenOptions><OOI key="OVERVIEW_LEVEL">NONE</OOI></OpenOptions><SourceBand>1</SourceBand>'
        f'<SrcRect xOff="{src[0]:.10g}" yOff="{src[1]:.10g}" xSize="{src[2]:.10g}" ySize="{src[3]:.10g}"/>'
        f'<DstRect xOff="0" yOff="0" xSize="{grid.width}" ySize="{grid.height}"/>{nodata_xml}'
        "</ComplexSource>"
    )


def _source_name(path: str) -> str:
    return f'<SourceFilename relativeToVRT="0">{escape(path)}</SourceFilename>'


def _vrt_xml(
    grid: Grid,
    bands: list[tuple[str, str, str]],
    data_type: str,
    nodata: float | None,
    metadata: dict[str, str],
    band_metadata: dict[str, dict[str, str]] | None = None,
) -> str:
    """A VRT whose band i reads ``bands[i] = (name, path, resampling)``."""
    items = "".join(f'<MDI key="{escape(k)}">{escape(str(v))}</MDI>' for k, v in metadata.items())
    parts = [
        f'<VRTDataset rasterXSize="{grid.width}" rasterYSize="{grid.height}">',
        f"<SRS>{escape(grid.projection)}</SRS>",
        f"<GeoTransform>{grid.xmin!r}, {grid.resolution!r}, 0, {grid.ymax!r}, 0, {-grid.resolution!r}</GeoTransform>",
        f"<Metadata>{items}</Metadata>",
    ]
    for index, (name, path, resampling) in enumerate(bands, start=1):
        own = "".join(
            f'<MDI key="{escape(k)}">{escape(str(v))}</MDI>' for k, v in (band_metadata or {}).get(name, {}).items()
        )
        nodata_xml = f"<NoDataValue>{nodata:g}</NoDataValue>" if nodata is not None else ""
        parts.append(
            f'<VRTRasterBand dataType="{data_type}" band="{index}">'
            f"<Description>{escape(name)}</Description><Metadata>{own}</Metadata>{nodata_xml}"
            f"{_source_xml(path, grid, resampling, nodata)}</VRTRasterBand>"
        )
    parts.append("</VRTDataset>")
    return "\n".join(parts)


def _band_file(product: Product, band: str, resolution: float) -> tuple[str, str]:
    """The file to read a band from at ``resolution`` and how to resample it.

    L2A products carry each band at its native resolution and downsampled to
    the coarser ones (made by ESA): take the file made for the resolution when
    there is one, else the finest file, averaged down or bilinear up (the
    FarmVibes.AI's upsampling).
    """
    own = product.images.get((band, int(resolution))) if float(resolution).is_integer() else None
    if own:
        return own, "nearest"
    available = sorted(r for b, r in product.images if b == band)
    finer = [r for r in available if r <= resolution]
    chosen = max(finer) if finer else min(available)
    return product.images[(band, chosen)], "average" if chosen < resolution else "bilinear"


def stack_metadata(product: Product, source: str) -> dict[str, str]:
    """The items ``pipeline`` reads (level, offset) and what a user wants to trace the stack back."""
    metadata = {
        "PROCESSING_LEVEL": product.level,
        "PROCESSING_BASELINE": product.baseline,
        "QUANTIFICATION_VALUE": f"{product.quantification:g}",
        "S2_PRODUCT": str(source),
        "CREDIT": "Contains modified Copernicus Sentinel data",
    }
    offsets = {product.offsets.get(b, 0.0) for b in product.bands}
    if len(offsets) > 1:
        # The engine applies one offset to all bands; ESA has always used one value.
        raise ProductError(
            f"The product's bands have different radiometric offsets {sorted(offsets)}; "
            "this plugin applies one offset to all bands."
        )
    offset = offsets.pop()
    if offset:
        metadata[product.offset_key] = f"{offset:g}"
    return metadata


def write_stack(
    product: Product, out_path: str, grid: Grid, source: str = "", extra: dict[str, str] | None = None
) -> str:
    """The band stack on ``grid`` as a VRT over the product's files, or a GeoTIFF (by extension)."""
    bands = [(b, *_band_file(product, b, grid.resolution)) for b in product.bands]
    metadata = {**stack_metadata(product, source or product.metadata_path), **(extra or {})}
    band_metadata = {
        b: {product.offset_key: f"{product.offsets[b]:g}"} for b in product.bands if product.offsets.get(b)
    }
    xml = _vrt_xml(grid, bands, "UInt16", product.nodata, metadata, band_metadata)
    return _write(xml, out_path)


def _write(xml: str, out_path: str) -> str:
    """Save a VRT as is, or translate it to a compressed GeoTIFF."""
    if out_path.lower().endswith(".vrt"):
        with open(out_path, "w", encoding="utf-8") as handle:
            handle.write(xml)
        return out_path
    done, detail = gdal_try(gdal.Translate, out_path, xml, format="GTiff", creationOptions=GTIFF_OPTIONS)
    if done is None:
        raise ProductError(f"Could not write '{out_path}': {detail}")
    done = None
    return out_path


# -- the product's own mask, SCL-coded


def _l1c_mask(product: Product) -> str | None:
    """An L1C product's raster cloud mask (baseline 04.00+: MSK_CLASSI_B00.jp2), or None."""
    granules = {p.split("/IMG_DATA/")[0] for p in product.images.values() if "/IMG_DATA/" in p}
    for granule in sorted(granules):
        path = f"{granule}/QI_DATA/MSK_CLASSI_B00.jp2"
        if _exists(path):
            return path
    return None


def _coded_classi(path: str, out_path: str) -> str:
    """MSK_CLASSI (bands: opaque, cirrus, snow; 1 = flagged) coded with SCL classes."""
    ds = _open(path, "cloud mask")
    opaque, cirrus, snow = (ds.GetRasterBand(i).ReadAsArray() != 0 for i in (1, 2, 3))
    coded = np.full(opaque.shape, SCL_UNCLASSIFIED, dtype=np.uint8)
    coded[snow], coded[cirrus], coded[opaque] = SCL_SNOW, SCL_CIRRUS, SCL_CLOUD_HIGH
    out, detail = gdal_try(
        gdal.GetDriverByName("GTiff").Create,
        out_path,
        ds.RasterXSize,
        ds.RasterYSize,
        1,
        gdal.GDT_Byte,
        options=["COMPRESS=DEFLATE"],
    )
    if out is None:
        raise ProductError(f"Could not write '{out_path}': {detail}")
    out.SetGeoTransform(ds.GetGeoTransform())
    out.SetProjection(ds.GetProjection())
    write_array(out, coded)
    out = None
    return out_path


def write_product_mask(product: Product, out_path: str, grid: Grid, pending: list | None = None) -> str:
    """The product's mask on ``grid`` (nearest), coded as SCL.

    The L2A SCL itself; for L1C its MSK_CLASSI as 9 opaque cloud, 10 cirrus, 11 snow, 7 nothing
    flagged. Metadata item ``PRODUCT_MASK_KIND=scl`` tells the improve algorithms how to read it.

    With ``pending`` (``staging.atomic_outputs``) every file is written beside its final name
    and renamed into place with the run's other outputs; without it, straight to ``out_path``.
    """
    classi_tmp = ""
    if product.level == "L2A":
        source = _band_file(product, "SCL", max(grid.resolution, 20))[0]
    else:
        classi = _l1c_mask(product)
        if classi is None:
            raise NoProductMask(
                "This L1C product has no raster cloud mask (MSK_CLASSI_B00.jp2 comes "
                "with baseline 04.00 and later). Run without a product mask."
            )
        # A VRT output reads the recoded mask at its final name beside it; a GeoTIFF copies it in,
        # so it is only a temporary file then.
        if out_path.lower().endswith(".vrt"):
            final = os.path.splitext(out_path)[0] + "_classi.tif"
            source = stage(pending, final) if pending is not None else final
        else:
            source = classi_tmp = partial_path(out_path)
        _coded_classi(classi, source)
    metadata = {MASK_KIND_KEY: "scl", "S2_PRODUCT": product.metadata_path, "PROCESSING_BASELINE": product.baseline}
    xml = _vrt_xml(grid, [("SCL", source, "nearest")], "Byte", SCL_NODATA, metadata)
    if product.level == "L1C" and out_path.lower().endswith(".vrt"):
        # Built from the staged file (it must be read), the VRT points at the name it will have.
        xml = xml.replace(_source_name(source), _source_name(final))
    write_to = stage(pending, out_path) if pending is not None else out_path
    try:
        _write(xml, write_to)
    finally:
        discard(classi_tmp)
    return out_path


# -- what the Processing algorithms call


def prepare(
    source: str,
    stack_path: str,
    mask_path: str | None = None,
    resolution: float = 10.0,
    bounds: tuple[float, float, float, float] | None = None,
) -> tuple[Product, str | None]:
    """Write the stack (and the product mask) of a product at ``resolution``, cut to ``bounds``.

    Returns the product and the mask's path, None when the product has no raster mask.
    The stack records the mask's path so the improve algorithms can default to it.
    """
    for path in (stack_path, mask_path):
        if path and not path.lower().endswith(".vrt"):  # a VRT is written as one
            require_geotiff_name(path)
        if path:
            check_replaceable(path)  # in use (on Windows: loaded in QGIS): said before any work
    product = read_product(source)
    grid = product_grid(product, resolution, bounds)
    # Both files appear together when both are complete, never one of them or half of one.
    with atomic_outputs() as pending:
        if mask_path:
            try:
                write_product_mask(product, mask_path, grid, pending)
            except NoProductMask:
                mask_path = None
        extra = {PRODUCT_MASK_KEY: os.path.abspath(mask_path)} if mask_path else {}
        write_stack(product, stage(pending, stack_path), grid, source, extra)
    return product, mask_path


def product_crs(source: str) -> str:
    """WKT of a product's CRS (to bring a user's extent into it)."""
    product = read_product(source)
    return product_grid(product, 60).projection


def resolve(source: str, folder: str, mask: bool = False) -> str:
    """A product path or SENTINEL2 URI becomes a VRT stack (or, with ``mask``, its SCL-coded mask) in ``folder``.

    Any other source is returned unchanged. VRTs cost nothing to build."""
    if not is_product(source):
        return source
    uri = parse_uri(source)
    resolution = uri[1] if uri else 10.0
    out = tempfile.mkdtemp(prefix="s2product-", dir=folder)
    stack, product_mask = os.path.join(out, "stack.vrt"), os.path.join(out, "product_mask.vrt")
    if mask:
        product = read_product(source)
        return write_product_mask(product, product_mask, product_grid(product, resolution))
    prepare(source, stack, product_mask, resolution)
    return stack


def product_mask_of(raster: str) -> str | None:
    """The product mask recorded in a stack made from a product, when it still exists."""
    if not raster or not os.path.exists(raster):
        return None
    ds, _ = gdal_try(gdal.Open, raster)
    path = ds.GetMetadataItem(PRODUCT_MASK_KEY) if ds is not None else None
    return path if path and os.path.exists(path) else None


def is_scl_coded(raster: str) -> bool:
    """True for a product mask written here (SCL or SCL-coded L1C mask)."""
    ds, _ = gdal_try(gdal.Open, raster) if raster else (None, "")
    return ds is not None and ds.GetMetadataItem(MASK_KIND_KEY) == "scl"
