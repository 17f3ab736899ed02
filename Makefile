# ssp-rl. Two commands on a fresh clone: `make demo` and `make test` (each installs first).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Process env vars come from cluster/env.py (the CLI and the tests apply it), not from here.

.PHONY: install test demo bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml cluster/install.sh
	bash cluster/install.sh $(VENV)
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

# The main job, all of SSP: tiny model -> Spectrum (SFT on Ray Train, probe, merge) -> Signal (`ssp rl`, MGPO)
# -> summary table, plots, dashboard. DEMO_DIR=runs/demo-X continues a run that stopped.
DEMO_DIR ?= runs/demo-$(shell date +%Y%m%d-%H%M%S)
demo: $(STAMP)
	$(VENV)/bin/ssp pipeline --config configs/tiny-cpu.yaml run_dir=$(DEMO_DIR)

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf artifacts runs .pytest_cache
