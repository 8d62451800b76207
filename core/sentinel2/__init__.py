"""Sentinel-2 products as users download them: .SAFE folders, their .zip, MTD files."""
