"""sentinel2."""
