#!/usr/bin/env bash
# Set up (scripts/setup.sh), lint (ruff), type-check (mypy), check the layering
# (scripts/check_architecture.py) and run the tests (pytest).
# Arguments go to pytest: scripts/test.sh -k s3 -x
# Exits non-zero on any failure, including a pytest run that collected no tests.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

bash scripts/setup.sh

printf '\n==> ruff\n'
.venv/bin/ruff check sdk blobfs tests scripts

printf '\n==> mypy\n'
.venv/bin/mypy

printf '\n==> architecture\n'
.venv/bin/python scripts/check_architecture.py

printf '\n==> pytest\n'
status=0
.venv/bin/python -m pytest -q --durations=25 "$@" || status=$?
if [[ $status -eq 5 ]]; then
    echo "test.sh: pytest collected no tests" >&2
fi
exit "$status"
