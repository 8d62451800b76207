"""Many products in one go: finding them, running each, the summary, and Dask."""
