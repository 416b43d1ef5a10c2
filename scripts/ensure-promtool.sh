#!/usr/bin/env bash
# Make sure `promtool` (Prometheus' rule checker and rule unit-test runner) is available to the
# tests (tests/test_deploy_monitoring.py), which look for it the same way this script does:
# $PROMTOOL, then the project-local cache .cache/bin/promtool, then PATH.
#
# When there is none, it is taken from Debian's `prometheus` package without installing that
# package: `apt-get download` fetches the .deb (about 19 MB) and only /usr/bin/promtool is
# extracted from it into .cache/bin/. No Prometheus server is installed or started, nothing
# outside the project directory changes (except `apt-get update`, run as root only when apt has
# no package lists yet). promtool is a static Go binary: it needs nothing else.
#
# (`go install github.com/prometheus/prometheus/cmd/promtool@...` is not an option: Prometheus'
# go.mod has replace directives, which `go install pkg@version` refuses.)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
readonly CACHE_BIN="$ROOT/.cache/bin"
readonly CACHED="$CACHE_BIN/promtool"

# Run a command as root: directly when we are root, through sudo otherwise.
as_root() {
    if ((EUID == 0)); then
        "$@"
    else
        sudo "$@"
    fi
}

# Print the promtool to use, or nothing: $PROMTOOL, the cache, PATH (in that order).
find_promtool() {
    if [[ -n "${PROMTOOL:-}" && -x "$PROMTOOL" ]]; then
        printf '%s\n' "$PROMTOOL"
    elif [[ -x "$CACHED" ]]; then
        printf '%s\n' "$CACHED"
    elif command -v promtool >/dev/null 2>&1; then
        command -v promtool
    fi
}

install_from_debian() {
    if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
        echo "ensure-promtool: no apt-get/dpkg-deb here: install promtool (from a Prometheus" \
            "release, https://prometheus.io/download/) on PATH or set PROMTOOL" >&2
        exit 1
    fi
    if ! apt-cache show prometheus >/dev/null 2>&1; then
        if ((EUID != 0)) && ! command -v sudo >/dev/null 2>&1; then
            echo "ensure-promtool: apt knows no 'prometheus' package and we cannot run" \
                "apt-get update (not root, no sudo)" >&2
            exit 1
        fi
        echo "ensure-promtool: apt has no 'prometheus' package listed: running apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    fi

    local work
    work=$(mktemp -d)
    # shellcheck disable=SC2064  # expand now: the path is fixed
    trap "rm -rf '$work'" EXIT
    echo "ensure-promtool: promtool not found: extracting it from Debian's prometheus package"
    # As root, apt would drop to the _apt user, which cannot write to our temp dir: let it.
    chmod 755 "$work"
    mkdir "$work/root"
    (cd "$work" && apt-get download -q -o APT::Sandbox::User=root prometheus)
    dpkg-deb --fsys-tarfile "$work"/prometheus_*.deb | tar -x -C "$work/root" ./usr/bin/promtool
    if [[ ! -x "$work/root/usr/bin/promtool" ]]; then
        echo "ensure-promtool: the prometheus package has no /usr/bin/promtool" >&2
        exit 1
    fi
    mkdir -p "$CACHE_BIN"
    # Copy then rename, so an interrupted run never leaves a half-written binary in the cache.
    cp "$work/root/usr/bin/promtool" "$CACHED.partial"
    mv -f "$CACHED.partial" "$CACHED"
    rm -rf "$work"
    trap - EXIT
}

promtool=$(find_promtool)
if [[ -z "$promtool" ]]; then
    install_from_debian
    promtool=$(find_promtool)
fi
if ! version=$("$promtool" --version 2>&1 | head -n 1); then
    echo "ensure-promtool: $promtool does not run: $version" >&2
    exit 1
fi
echo "ensure-promtool: $promtool: $version"
