#!/bin/sh
# Set up pallet on a fresh Debian machine (as root) and run its main job.
#   - installs the Debian packages pallet needs (apt-get),
#   - makes .venv with pallet installed in it (pip),
#   - builds a busybox bundle and runs a container in it with pallet-runtime.
# Idempotent: a second run only re-checks.
set -eu
cd "$(dirname "$0")"
here=$(pwd)

scripts/apt-ensure python3 python3-venv busybox-static libseccomp2 iptables nftables iproute2 tini

if [ ! -x .venv/bin/python ]; then
    echo "==> making .venv"
    /usr/bin/python3 -m venv .venv
fi
if ! .venv/bin/python -c "import pallet, aiohttp, zstandard, isal, dns" 2>/dev/null; then
    echo "==> installing pallet into .venv"
    .venv/bin/pip install -q -e .
fi

# The console scripts pip writes import `re` and run `site`: ~20 ms of a ~25 ms budget.
# Replace them with launchers that start the interpreter isolated and import only what
# the command needs. (The entry points stay declared in pyproject.toml for other
# installers.)
# The same for the `pallet` CLI: each command is a process start too (palletd, which
# imports aiohttp and friends from site-packages, keeps pip's script).
for tool in pallet-runtime:pallet.runtime.cli pallet:pallet.cli.main; do
    name=${tool%%:*}
    module=${tool#*:}
    cat > ".venv/bin/$name" <<LAUNCHER
#!$here/.venv/bin/python3 -IS
import sys
sys.path.insert(0, "$here")
from $module import run
run()
LAUNCHER
    chmod 755 ".venv/bin/$name"
done
ln -sf "$here/.venv/bin/pallet-runtime" /usr/local/bin/pallet-runtime

[ "${SETUP_ONLY:-}" = 1 ] && exit 0

ln -sf "$here/.venv/bin/pallet" /usr/local/bin/pallet
ln -sf "$here/.venv/bin/palletd" /usr/local/bin/palletd

# pallet's main job: palletd serving the Engine API (its pallet-monitor holds the
# containers), a base image made here with no registry, and a container run through it.
scripts/palletd-service start
if ! pallet image inspect busybox:latest >/dev/null 2>&1; then
    echo "==> pallet image bootstrap busybox"
    pallet image bootstrap busybox
fi
pallet images
echo "==> pallet run --rm busybox ..."
pallet run --rm --hostname pallet-demo --memory 64m busybox \
    sh -c 'echo "hello from $(hostname), pid $$ in its own namespaces"; uname -sr'
echo "    (the docker CLI works too: export DOCKER_HOST=unix:///run/pallet/pallet.sock;"
echo "     stop the daemon with scripts/palletd-service stop: containers keep running)"
