# The two commands of the README: `make run` and `make test`. Both set up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
LOCK := requirements.lock
# System parts. To run: venv support for a stock Debian python3 and FluidSynth with a GM
# soundfont for rendering. Only for the tests: MuseScore 3 (headless) to check the exports,
# and Chromium, which Playwright drives for the page's browser tests (tests/browser.py).
APT_RUN := python3-venv fluidsynth fluid-soundfont-gm
APT_TEST := musescore3 chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup setup-test system system-test venv check-lock lock run corpus default-model test lint format fuzz bench bench-train clean

setup: system venv
setup-test: setup system-test

# Installs the apt packages only when one is missing, so a second run is quiet.
define apt_install
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef
system:
	$(call apt_install,$(APT_RUN))
system-test:
	$(call apt_install,$(APT_TEST))

venv: $(STAMP)

# Every Python distribution in .venv comes from requirements.lock at its exact version (made by
# `make lock` from pyproject.toml's extras and requirements.in). pip is pinned first, then the
# lock, then the project itself without dependencies; scripts/check_lock.py removes anything the
# lock does not name (left from an older lock) and fails if a version differs. torch is the
# CPU build 2.13.0+cpu, which the project's machines (and CI) serve from pip's local wheel
# folder. Re-installs only when the lock or pyproject.toml changes.
$(STAMP): $(LOCK) pyproject.toml
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q "$$(grep -E '^pip==' $(LOCK))"
	$(PIP) install -q -r $(LOCK)
	$(PIP) install -q --no-deps --no-build-isolation -e .
	$(PY) scripts/check_lock.py --prune
	@touch $(STAMP)

# The venv against the lock: fails naming each distribution that is missing, extra or at
# another version (tests/test_lock.py runs the same check in the suite).
check-lock: venv
	$(PY) scripts/check_lock.py

# Re-resolves the lock from pyproject.toml and requirements.in at today's newest releases,
# installs it and runs the whole suite. Run it when you add or change a dependency, or to take
# new releases on purpose; commit requirements.lock only when the suite passed on it.
# UPGRADE=0 keeps every pin that still fits and only adds what is new.
UPGRADE ?= 1
lock:
	@[ -x $(VENV)/bin/uv ] || { [ -x $(PY) ] || $(PYTHON) -m venv $(VENV); $(PIP) install -q "$$(grep -E '^uv==' $(LOCK))"; }
	@cp $(LOCK) $(LOCK).new  # uv keeps the pins of the file it writes unless --upgrade
	$(VENV)/bin/uv pip compile pyproject.toml requirements.in --extra all --extra dev \
	  --find-links /opt/wheels --python $(PY) --no-header $(if $(filter 1,$(UPGRADE)),--upgrade) \
	  -o $(LOCK).new
	@{ echo "# The exact versions make setup installs (Linux x86-64, CPython 3.11). Made by 'make lock';"; \
	   echo "# edit pyproject.toml or requirements.in, never this file."; cat $(LOCK).new; } > $(LOCK)
	@rm -f $(LOCK).new
	$(MAKE) test

# The page, on the shipped model and the midi_in/ examples: open http://localhost:8501
# (PORT=... to change it; ADDRESS=0.0.0.0 to serve other machines). Stop it with Ctrl+C.
# WATCH=1, for development: watch the source files and rerun the page when one is saved (off by
# default in .streamlit/config.toml: watching .venv costs a core).
PORT ?= 8501
ADDRESS ?= localhost
WATCH ?= 0
run: setup
	$(VENV)/bin/streamlit run app.py --server.headless true --server.port $(PORT) \
	  --server.address $(ADDRESS) \
	  $(if $(filter 1,$(WATCH)),--server.fileWatcherType auto --server.runOnSave true \
	  --server.folderWatchBlacklist '[".venv", "data", "runs", "build"]')

# The training corpus: music21's bundled corpus (about 15,000 pieces) and the MIDI files of
# nine Debian packages of free game music (fetched with apt-get download into data/debian/,
# unpacked there, nothing installed; 82 pieces with drums, dynamics and band instruments).
# The first build takes about 25 minutes on two cores (music21's parsing is nearly all of it);
# a second one encodes only what changed (a few seconds).
DEBIAN_PACKAGES := simutrans-data planetblupi-music-midi freedink-data kobodeluxe-data songwrite \
	liquidwar-data pangzero crimson pinball-table-hurd-data
corpus: setup
	$(VENV)/bin/music-lm corpus build --source music21 \
	  $(foreach p,$(DEBIAN_PACKAGES),--source debian:$(p)) -o data/corpus
	$(VENV)/bin/music-lm corpus stats data/corpus

# The shipped default model: trained on data/corpus with this recipe (about two hours on
# two CPU cores), fine-tuned for the fill-in-the-middle form (about 8 minutes), then
# written in fp16 into music_lm/models/default/, evaluated on the test split beside the
# baselines, and its card rendered into docs/model-card.md. The Debian packages' pieces
# (style `none`: they carry no style word) get 30 % of the training windows, about three
# times their share of the tokens.
DEFAULT_RECIPE := --preset small --n-layer 6 --n-embd 320 --n-head 5 --context 1024 \
	--batch-size 8 --lr 1.5e-3 --warmup-steps 150 --max-steps 3200 --eval-every 500 \
	--eval-windows 32 --save-every 200 --weight music21=0.7 --weight none=0.3
DEFAULT_FIM_RECIPE := --fim-share 0.3 --max-steps 250 --batch-size 8 --lr 5e-4 \
	--warmup-steps 20 --dropout 0 --eval-every 50 --eval-windows 32 --save-every 50 \
	--weight music21=0.7 --weight none=0.3
default-model: setup
	@[ -f data/corpus/manifest.json ] || $(MAKE) corpus
	$(VENV)/bin/music-lm train -d data/corpus -o runs/default $(DEFAULT_RECIPE)
	$(VENV)/bin/music-lm finetune --base runs/default -d data/corpus -o runs/default-fim \
	  $(DEFAULT_FIM_RECIPE)
	$(PY) scripts/release_model.py runs/default-fim --step 250 --data data/corpus

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: setup-test lint
	$(VENV)/bin/pytest

# The long fuzz run: MIDI bytes and token text under atheris (libFuzzer), 1,000,000 inputs
# in all (800,000 MIDI, 200,000 text), one target after the other on one core: 69 minutes
# on the project's two-core machine. Crashes, counts and speeds go to build/fuzz/summary.json
# (the corpus grows in build/fuzz/corpus); docs/reliability.md has the figures. A short run
# of both targets (about 30 s) is part of `make test` (tests/test_fuzz.py).
FUZZ_EXECS ?= 1000000
fuzz: setup
	$(PY) fuzz/run.py --execs $(FUZZ_EXECS) --out build/fuzz

bench: setup-test
	$(PY) bench/codec.py
	$(PY) bench/corpus.py
	$(PY) bench/train.py
	$(PY) bench/generate.py
	$(PY) bench/render.py
	$(PY) bench/cache.py
	$(PY) bench/page.py

# On a GPU machine: the small and base presets, compiled bf16, with their MFU.
bench-train: setup
	$(PY) bench/train.py --presets small base

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build *.egg-info
