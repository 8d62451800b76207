# Cloud Mask Improver: setup, demo, tests, benchmark.
# `make setup GPU=1` installs GPU support (onnxruntime-gpu with CUDA), `GPU=0` goes back to the CPU.
PY := .venv/bin/python
export QT_QPA_PLATFORM ?= offscreen

.PHONY: setup demo test lint bench zip

setup:
	@GPU="$(GPU)" bash scripts/setup.sh

demo: setup
	@bash scripts/demo.sh

test: setup
	$(PY) -m pytest test -q

lint:
	$(PY) -m ruff check .

bench: setup
	$(PY) scripts/bench.py

zip: setup
	@bash scripts/zip.sh
