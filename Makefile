# Quick start (README): `make diagnose` runs the main job on this host, `make test` runs the tests.
SYMPTOM ?= high-latency
VENV ?= .venv
PYTEST_ARGS ?=

.PHONY: diagnose test install bench clean

install:
	./scripts/bootstrap.sh

# exit code 1 means "findings", which is a successful diagnosis
diagnose: install
	@$(VENV)/bin/diagnose --symptom $(SYMPTOM); rc=$$?; \
	  if [ $$rc -eq 1 ]; then echo "(exit 1: findings reported above)" >&2; exit 0; fi; exit $$rc

test: install
	$(VENV)/bin/python -m pytest -q -ra $(PYTEST_ARGS)

bench: install
	$(VENV)/bin/python bench/bench_diagnose.py

clean:
	rm -rf $(VENV) .pytest_cache
