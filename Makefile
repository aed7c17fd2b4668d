# The two set-up commands of the README. Both create .venv when it is missing.
.PHONY: demo test

demo:
	@PY=$$(bash scripts/venv.sh) && $$PY -m amortized_rlddm.cli demo

test:
	@PY=$$(bash scripts/venv.sh) && $$PY -m ruff check . && $$PY -m pytest
