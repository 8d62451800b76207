# Cloud Mask Improver: setup, demo, tests, benchmark.
PY := .venv/bin/python
export QT_QPA_PLATFORM ?= offscreen

.PHONY: setup demo test lint bench zip

setup:
	@bash scripts/setup.sh

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
