# Two commands for a new machine:  `make demo` (the main job)  and  `make test` (the tests).
# Both bootstrap what they need: a .venv with the pinned versions, the package, the embedded data.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.discl-installed
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
APT := $(shell command -v apt-get 2>/dev/null)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup data demo demo-lq test test-slow bench lint clean

setup: $(STAMP) data

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned, so that no other package pulls a different build
	$(BIN)/pip install -q -c constraints.txt torch torchvision
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

# Fashion-MNIST: offline from Debian's package when possible; DISCL_FMNIST_DIR may point elsewhere.
data:
	@if [ -n "$$DISCL_FMNIST_DIR" ] || [ -f $(FMNIST) ]; then :; \
	elif [ -n "$(APT)" ]; then $(SUDO) apt-get install -y -q dataset-fashion-mnist >/dev/null; \
	else echo "Fashion-MNIST not found: set DISCL_FMNIST_DIR to a folder holding the four idx .gz files" >&2; exit 1; fi

demo: setup
	$(BIN)/discl run configs/fmnist-lt.yaml

demo-lq: setup
	$(BIN)/discl run configs/fmnist-lq.yaml

# headless Chromium renders the report in the browser test
browser:
	@command -v chromium >/dev/null || { [ -n "$(APT)" ] && $(SUDO) apt-get install -y -q chromium >/dev/null; } || true

test: setup browser
	$(BIN)/python -m pytest -q

test-slow: setup browser
	$(BIN)/python -m pytest -q -m slow

bench: setup
	$(BIN)/python bench/run_all.py

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf runs .pytest_cache
