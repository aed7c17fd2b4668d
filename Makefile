# The two set-up commands of the README. Both create .venv when it is missing.
.PHONY: demo test test-fast

# make demo DATA=file.csv DEMO_ARGS="--convention hddm --checkpoint general ...": the demo on a data file
demo:
	@PY=$$(bash scripts/venv.sh) && $$PY -m amortized_rlddm.cli demo $(if $(DATA),--data $(DATA) $(DEMO_ARGS))

test:
	@PY=$$(bash scripts/venv.sh) && $$PY -m ruff check . && $$PY -m pytest

# the development path: lint and every test not marked slow (no training, PyMC, wheel or tutorial)
test-fast:
	@PY=$$(bash scripts/venv.sh) && $$PY -m ruff check . && $$PY -m pytest -m "not slow"
