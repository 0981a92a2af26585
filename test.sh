#!/bin/sh
# Run pallet's whole test suite (as root): lint, types, layer contracts, unit and
# integration tests. Installs what a fresh Debian machine lacks first (via setup.sh's
# install steps) plus the test tools.
set -eu
cd "$(dirname "$0")"
SETUP_ONLY=1 ./setup.sh >/dev/null
# What only the tests use: dockerd/containerd and podman drive pallet-runtime in
# tests/compat.
scripts/apt-ensure docker.io containerd podman tar docker-registry skopeo umoci openssl debootstrap docker-compose
if ! .venv/bin/python -c "import pytest, mypy, importlinter, aiohttp, zstandard, isal, docker" 2>/dev/null || [ ! -x .venv/bin/ruff ]; then
    echo "==> installing test tools into .venv"
    .venv/bin/pip install -q -e '.[test]'
fi
echo "==> ruff"
.venv/bin/ruff check pallet tests bench
echo "==> mypy --strict"
.venv/bin/mypy
echo "==> import contracts"
.venv/bin/lint-imports
echo "==> pytest"
exec .venv/bin/pytest -q "$@"
