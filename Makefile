# ssp-rl. Two commands on a fresh clone: `make demo` and `make test` (each installs first).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export VLLM_CPU_OMP_THREADS_BIND ?= nobind
export VLLM_CPU_KVCACHE_SPACE ?= 1
export VLLM_ENABLE_V1_MULTIPROCESSING ?= 0
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install test demo bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml cluster/install.sh
	bash cluster/install.sh $(VENV)
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

# The main job: tiny model -> SFT warm-up -> `ssp rl` (MGPO on Ray) -> summary table, plots, dashboard.
demo: $(STAMP)
	$(VENV)/bin/ssp rl --config configs/tiny-cpu.yaml run_dir=runs/demo-$$(date +%Y%m%d-%H%M%S)

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf artifacts runs .pytest_cache
