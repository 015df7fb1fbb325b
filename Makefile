# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test install browser bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Installs, initialises spool + SQLite, loads the sample directory and partner, starts the service.
run: $(STAMP)
	$(BIN)/edi init
	$(BIN)/edi directory import config/structures.csv --services config/services.csv
	$(BIN)/edi serve

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

# The console's end-to-end tests drive Debian's Chromium and its driver (browsers cannot be
# downloaded any other way here); installed when missing (CI runs as root on a fresh machine).
# When they cannot be installed, the browser tests are skipped and say why.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" != 0 ]; then echo "chromium/chromedriver absents et pas root : tests navigateur ignorés"; \
	else (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver) \
	  || echo "installation de chromium impossible : tests navigateur ignorés"; fi

bench: $(STAMP)
	$(BIN)/python benchmarks/pipeline.py

clean:
	rm -rf $(VENV) build *.egg-info
