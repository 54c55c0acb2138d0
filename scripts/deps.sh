#!/bin/sh
# Install the Debian and npm packages that building, running and testing
# Trainyard need. Safe to run again: it installs only what is missing and
# runs `apt-get update` only then. Without root it prints the command to run.
#   scripts/deps.sh [--no-npm]
# --no-npm skips the npm packages, which only the browser tests use, so
# that `make run` works on a machine that cannot reach the npm registry.
set -eu

cd "$(dirname "$0")/.."

npm_packages=yes
case "${1:-}" in
"") ;;
--no-npm) npm_packages=no ;;
*)
    echo "deps: unknown option '$1'. The only option is --no-npm." >&2
    exit 2
    ;;
esac

packages="build-essential pkg-config make git ca-certificates curl
  clang libclang-rt-14-dev valgrind
  emscripten
  libcivetweb-dev libwebsockets-dev libsqlite3-dev sqlite3 libcjson-dev
  libsodium-dev libssl-dev libyaml-dev libjpeg-dev libspng-dev libpng-dev
  libzip-dev zlib1g-dev libopenblas-dev libdnnl-dev libhpdf-dev libcmocka-dev
  dataset-fashion-mnist chromium fonts-dejavu-core"

# The browser tests run under Node.js; a machine with its own node keeps it.
if [ "$npm_packages" = yes ] && ! command -v npm >/dev/null 2>&1; then
    packages="$packages nodejs npm"
fi

missing=""
for p in $packages; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$status" in
    *"ok installed") ;;
    *) missing="$missing $p" ;;
    esac
done

if [ -n "$missing" ]; then
    echo "deps: missing Debian packages:$missing"
    if [ "$(id -u)" -ne 0 ]; then
        # A minimal Debian has no sudo, so the command is printed without it.
        sudo=""
        if command -v sudo >/dev/null 2>&1; then
            sudo="sudo "
        fi
        echo "deps: not root, so nothing was installed. Run as root:"
        echo "  ${sudo}apt-get update && ${sudo}apt-get install -y" \
             "--no-install-recommends$missing"
        echo "deps: then run the make command again."
        exit 1
    fi
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y \
        --no-install-recommends $missing
fi

# npm packages for the browser tests, exactly as the lockfile pins them.
# npm writes node_modules/.package-lock.json on every install; when it is
# newer than the committed lockfile the install is current.
[ "$npm_packages" = yes ] || exit 0
e2e=tests/e2e
if [ ! -f "$e2e/node_modules/.package-lock.json" ] ||
   [ "$e2e/package-lock.json" -nt "$e2e/node_modules/.package-lock.json" ]
then
    echo "deps: installing npm packages in $e2e from package-lock.json"
    if ! (cd "$e2e" && npm ci --no-audit --no-fund --loglevel=error); then
        echo "deps: 'npm ci' in $e2e failed with the npm error above." >&2
        echo "deps: only the browser tests need these packages. Check that" \
             "npm reaches $(npm config get registry) (behind a TLS proxy," \
             "set npm's cafile), then run the command again." >&2
        exit 1
    fi
fi
