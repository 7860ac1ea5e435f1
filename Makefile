# The two commands a newcomer needs: `make demo` (the main job) and `make test`.
.PHONY: setup lock demo test test-unit lint bench dashboard schemas clean

setup:
	bash scripts/setup_env.sh

lock:  # after editing pyproject's dependencies: re-resolve uv.lock (then commit it)
	bash scripts/uv.sh lock

demo: setup
	.venv/bin/streamrec demo

test: setup
	bash scripts/test.sh

test-unit: setup
	.venv/bin/python -m pytest tests/unit -q -m "not slow"

lint: setup
	.venv/bin/ruff check schemas stream_app model_export tests bench scripts
	.venv/bin/ruff format --check schemas stream_app model_export tests bench scripts
	.venv/bin/python -m mypy
	.venv/bin/python -c 'import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())'  # lint-imports

dashboard:  # the page's bundle (stream_app/worker/static/) from web/dashboard/, pinned by npm's lock
	cd web/dashboard && npm ci --no-audit --no-fund && npm run build

schemas: setup  # the JSON Schema files under schemas/json/ from the pydantic models
	.venv/bin/python scripts/json_schemas.py

bench: setup
	.venv/bin/python bench/run.py

clean:
	rm -rf var .pytest_cache
