# The two commands of the README.
.PHONY: demo test lint setup bench bench-endpoint bench-serve

setup:
	@bash scripts/setup.sh

# Set everything up and run the demo scenarios on the embedded model (no key, no network).
# An unmet expectation (exit 1) is part of what the demo shows, in its table; bad input (exit 2) fails.
demo: setup
	@.venv/bin/python run.py scenario scenarios/ || [ $$? -eq 1 ]

# Set everything up and run every test, the slow end-to-end ones on the embedded model included.
test: setup lint
	@bash scripts/setup_test_tools.sh
	.venv/bin/python -m pytest

# ruff's lint rules and its formatter (pyproject.toml), over the code, tests, benchmarks and scripts.
lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

# Both benchmarks: on the same prompts in one run, the bare assistant, guarded whole-answer, guarded chunks and
# AutoGen's reflection pattern (../shared/anchors/autogen_reflection.py) on the embedded model (under 20 minutes;
# figures in benchmarks/results/bench-<date>.json), then the engine's own costs against a local endpoint that
# answers after a fixed delay (about a minute; no model needed).
bench: setup
	.venv/bin/python benchmarks/bench.py --json
	.venv/bin/python benchmarks/endpoint_bench.py

bench-endpoint: setup
	.venv/bin/python benchmarks/endpoint_bench.py

# run.py serve under N = 1, 16, 64 concurrent clients, models behind it answering after 200 ms (about a minute).
bench-serve: setup
	.venv/bin/python benchmarks/serve_load.py --json benchmarks/results/serve_load-$$(date +%F).json
