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

test:
	./scripts/bootstrap.sh --test
	$(VENV)/bin/python -m pytest -q -ra $(PYTEST_ARGS)

bench: install
	$(VENV)/bin/python bench/bench_diagnose.py

clean:
	rm -rf $(VENV) .pytest_cache

# End-to-end accuracy: inject real faults (root), diagnose them, print the table
# (scenario, expected, top 3, top-1/top-3 rates). Exit status is pytest's.
ACCURACY_LOG ?= /tmp/sysdiag-accuracy.jsonl
.PHONY: accuracy
accuracy: install
	@rm -f $(ACCURACY_LOG)
	@SYSDIAG_ACCURACY_LOG=$(ACCURACY_LOG) $(VENV)/bin/python -m pytest tests/e2e -m e2e -q -ra $(PYTEST_ARGS); \
	  rc=$$?; $(VENV)/bin/python bench/accuracy.py $(ACCURACY_LOG); exit $$rc
