# CrossMuSim platform. `make run` and `make test` install what they need themselves.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := libfluidsynth3 fluid-soundfont-gm chromium
HOST ?= 127.0.0.1
PORT ?= 8000
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: run test install system-deps services migrate web worker stop lint bench

install: system-deps $(STAMP)

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; fi

$(STAMP): requirements.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.txt
	# musicnn ships the pretrained weights; its metadata pins TensorFlow 1 and numpy<1.17, so no deps.
	$(PIP) install -q --no-deps musicnn==0.1.0
	@touch $(STAMP)

services: install
	$(PY) -m abplatform.embedded start

migrate: services
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput -v 0

web: migrate
	@if [ -f var/gunicorn.pid ] && kill -0 $$(cat var/gunicorn.pid) 2>/dev/null; then echo "web: already running"; else \
	$(VENV)/bin/gunicorn abplatform.wsgi -b $(HOST):$(PORT) -k gthread -w 2 --threads 4 \
	  --daemon --pid var/gunicorn.pid --access-logfile var/gunicorn-access.log --error-logfile var/gunicorn.log; \
	echo "web: http://$(HOST):$(PORT)/"; fi

worker: migrate
	@if [ -f var/celery.pid ] && kill -0 $$(cat var/celery.pid) 2>/dev/null; then echo "worker: already running"; else \
	$(VENV)/bin/celery -A abplatform worker --detach --concurrency 2 --pidfile var/celery.pid \
	  --logfile var/celery.log --loglevel INFO; echo "worker: started (log in var/celery.log)"; fi

run: web worker
	@for i in $$(seq 1 60); do curl -sf http://$(HOST):$(PORT)/healthz >/dev/null && break; sleep 1; done
	@curl -s http://$(HOST):$(PORT)/healthz; echo
	@echo "platform up: http://$(HOST):$(PORT)/  (admin: /admin/, API docs: /api/docs/)"

test: install services
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .

stop:
	@-[ -f var/gunicorn.pid ] && kill $$(cat var/gunicorn.pid) 2>/dev/null && echo "web: stopped"; rm -f var/gunicorn.pid
	@-[ -f var/celery.pid ] && kill $$(cat var/celery.pid) 2>/dev/null && echo "worker: stopped"; rm -f var/celery.pid
	@-[ -x $(PY) ] && $(PY) -m abplatform.embedded stop
