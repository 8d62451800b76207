# Cloud Mask Improver: setup, demo, tests, benchmark.
# `make setup GPU=1` installs GPU support (onnxruntime-gpu with CUDA), `GPU=0` goes back to the CPU.
PY := .venv/bin/python
export QT_QPA_PLATFORM ?= offscreen

.PHONY: setup demo test test-fast test-matrix lint bench zip

setup:
	@GPU="$(GPU)" bash scripts/setup.sh

demo: setup
	@bash scripts/demo.sh

test: setup
	$(PY) -m pytest test -q

# The suite without the desktop sessions and the slow tests (QGIS in a subprocess, model
# conversion, long runs): for the edit-test loop. `make test` stays the whole suite.
test-fast: setup
	$(PY) -m pytest test -q -m "not desktop and not slow"

# The README's test command on QGIS 3.40 (Debian 13) and 3.44 (forky), each in a Debian root
# filesystem (built once under /var/cache/cloudmask-matrix; needs root, mmdebstrap, network).
test-matrix:
	@bash scripts/test_matrix.sh

# ruff (rules and format), mypy on core/ (the part that runs without QGIS; settings in pyproject.toml), and the
# Python floor: the shipped code (what `make zip` packs) runs on Python 3.9, which QGIS
# 3.22-3.28 for Windows ship (metadata.txt: qgisMinimumVersion=3.22).
lint:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	.venv/bin/vermin -t=3.9- --violations --no-tips $$(git ls-files '*.py' ':!test' ':!scripts' ':!docs')

# `make bench GPU=1` also measures a full tile on the GPU (figure 8), after setup installed GPU support.
# `make bench NEW=1`: only the start-up, the reference packages (ukis-csmask, s2cloudless, in a venv
# of the benchmark's own) and the full tile at the default resolution and at 10 m; QUICK=1: shorter.
bench: setup
	$(PY) scripts/bench.py $(if $(filter 1,$(GPU)),--gpu) $(if $(filter 1,$(NEW)),--new) $(if $(filter 1,$(QUICK)),--quick)

# A release zip for plugins.qgis.org (refused while pyproject.toml lacks the contact addresses);
# `make zip DEV=1` builds one without them, for a local *Install from ZIP*.
zip: setup
	@bash scripts/zip.sh $(if $(filter 1,$(DEV)),--dev)
