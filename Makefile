# Entry points. `make run` renders the bundled sample end to end; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
# The CPU build of torch that tests use; GPU images install their own CUDA build.
TORCH_CPU := torch==2.13.0

PACKAGES := common services/splitter services/stitcher services/generator gateway client
PYPROJECTS := $(addsuffix /pyproject.toml,$(PACKAGES))

.PHONY: install install-postgres browser proto proto-check config-docs config-docs-check lint test test-fast run up bench bench-gpu bench-gpu-parallel bench-gpu-service k8s-check images download-weights clean

install: $(STAMP)

$(STAMP): $(PYPROJECTS) requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_CPU)
	$(PIP) install -q -e "common[media]" -e services/splitter -e services/stitcher \
		-e "services/generator[infinitetalk,providers]" -e gateway -e client -r requirements-dev.txt grpcio-tools==1.85.1
	touch $(STAMP)

# The web page's tests drive Debian's chromium through Playwright; apt runs only when it is missing.
BROWSER_STAMP := $(VENV)/.browser
browser: $(BROWSER_STAMP)

$(BROWSER_STAMP): $(STAMP)
	@command -v chromium >/dev/null 2>&1 || { \
		SUDO=$$(command -v sudo >/dev/null 2>&1 && [ "$$(id -u)" != 0 ] && echo sudo); \
		$$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium; }
	touch $(BROWSER_STAMP)

# The PostgreSQL server the replica tests start themselves (Debian's `postgresql` package);
# apt runs only when its binaries are missing.
PG_STAMP := $(VENV)/.postgres
install-postgres: $(PG_STAMP)

$(PG_STAMP): $(STAMP)
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || { \
		SUDO=$$(command -v sudo >/dev/null 2>&1 && [ "$$(id -u)" != 0 ] && echo sudo); \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q postgresql; }
	touch $(PG_STAMP)

proto: $(STAMP)
	$(PY) scripts/gen_protos.py

proto-check: $(STAMP)
	$(PY) scripts/gen_protos.py --check

# docs/configuration.md's tables, generated from the services' settings (SETTINGS_HELP and the reads).
config-docs: $(STAMP)
	$(PY) scripts/gen_config_docs.py

config-docs-check: $(STAMP)
	$(PY) scripts/gen_config_docs.py --check

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: $(STAMP) $(BROWSER_STAMP) $(PG_STAMP) proto-check config-docs-check lint k8s-check
	$(VENV)/bin/pytest tests

test-fast: $(STAMP) $(BROWSER_STAMP) $(PG_STAMP)
	$(VENV)/bin/pytest tests -m "not e2e and not slow"

run: $(STAMP)
	$(PY) scripts/demo.py --out out/demo.mp4

up: $(STAMP)
	$(PY) scripts/stack.py up

# The seams benchmark speaks its recording with Debian's espeak-ng; apt runs only when it is missing.
ESPEAK_STAMP := $(VENV)/.espeak
$(ESPEAK_STAMP): $(STAMP)
	@command -v espeak-ng >/dev/null 2>&1 || { \
		SUDO=$$(command -v sudo >/dev/null 2>&1 && [ "$$(id -u)" != 0 ] && echo sudo); \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q espeak-ng; }
	touch $(ESPEAK_STAMP)

bench: $(STAMP) $(PG_STAMP) $(ESPEAK_STAMP)
	$(PY) bench/run_all.py

# Full-size InfiniteTalk DiT with random weights; needs a CUDA GPU (FP8 parts: compute capability 8.9+,
# cuDNN FP8 attention: 9.0+ and the generator's `fp8` extra). REFERENCE_DIR=path adds the reference
# implementation's forward side by side (see docs/performance.md). On a machine with several GPUs
# it then times one clip on 1, 2, 4 and 8 of them in every parallel mode (bench-gpu-parallel).
REFERENCE_DIR ?=
GPUS ?= 1,2,4,8
bench-gpu:
	$(PYTHON) bench/gpu_kernels.py
	$(PYTHON) bench/gpu_engine.py
	$(PYTHON) bench/gpu_infinitetalk.py $(if $(REFERENCE_DIR),--reference-dir $(REFERENCE_DIR)) --kernels sdpa \
		--skip-compile --skip-offload --skip-encoders --fp8
	$(PYTHON) bench/gpu_two_persons.py
	$(PYTHON) bench/gpu_infinitetalk.py --clips turbo,fast,quality --clip-count 2 --quality-steps 3 --vae-dtype bf16
	@if [ "$$($(PYTHON) -c 'import torch; print(torch.cuda.device_count())')" -gt 1 ]; then \
		$(PYTHON) bench/gpu_parallel.py --gpus $(GPUS); fi

# The whole service on one GPU as `make up` starts it (GENERATOR_BACKEND=infinitetalk) on full-size
# random weights written to SERVICE_MODEL_DIR (about 41 GB, never committed): a seed-body job and a
# multipart turbo job, cold start, first playable segment, wall / clip time, model loads, memory,
# and the cost of bringing idle-offloaded weights back (see README, Performance).
SERVICE_MODEL_DIR ?= /tmp/itk-random-model
SERVICE_BENCH_ARGS ?= --seed-sec 60 --turbo-sec 60 --dtype fp8 --offload-idle-sec 10
bench-gpu-service:
	$(PYTHON) bench/gpu_service.py --model-dir $(SERVICE_MODEL_DIR) $(SERVICE_BENCH_ARGS)

# Only the multi-GPU table: make bench-gpu-parallel GPUS=1,2
bench-gpu-parallel:
	$(PYTHON) bench/gpu_parallel.py --gpus $(GPUS)

# The InfiniteTalk weights in the layout the generator loads: make download-weights MODEL_DIR=/models
MODEL_DIR ?= models
download-weights: $(STAMP)
	$(VENV)/bin/itk-download-weights $(MODEL_DIR)

k8s-check: $(STAMP)
	$(PY) scripts/k8s_check.py

images:
	./scripts/build_images.sh

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache .hypothesis
