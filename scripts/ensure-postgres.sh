#!/usr/bin/env bash
# Make sure the PostgreSQL server binaries (initdb, pg_ctl, postgres) exist, installing
# Debian's `postgresql` package when they don't. The tests never use a system service: their
# fixture (tests/pg/cluster.py) runs its own throwaway cluster from these binaries, and it
# looks for them the same way this script does: PATH first, then the highest
# /usr/lib/postgresql/<version>/bin (where Debian puts them, off PATH).
set -euo pipefail

readonly BINARIES=(initdb pg_ctl postgres)

# Print the first directory holding all of BINARIES: PATH order, then Debian's versioned
# directories from the highest version down. Prints nothing when there is none.
find_bindir() {
    local dir candidates=()
    local IFS=:
    for dir in $PATH; do
        candidates+=("${dir:-.}")
    done
    unset IFS
    local versioned
    versioned=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin 2>/dev/null |
        sort -t/ -k5,5 -V -r || true)
    while IFS= read -r dir; do
        [[ -n "$dir" ]] && candidates+=("$dir")
    done <<<"$versioned"

    local binary found
    for dir in "${candidates[@]}"; do
        found=1
        for binary in "${BINARIES[@]}"; do
            if [[ ! -x "$dir/$binary" || -d "$dir/$binary" ]]; then
                found=0
                break
            fi
        done
        if ((found)); then
            printf '%s\n' "$dir"
            return 0
        fi
    done
}

# shellcheck source=debian-install.sh
source "$(dirname "${BASH_SOURCE[0]}")/debian-install.sh"

bindir=$(find_bindir)
if [[ -z "$bindir" ]]; then
    echo "ensure-postgres: PostgreSQL server binaries not found"
    debian_install ensure-postgres postgresql
    bindir=$(find_bindir)
    if [[ -z "$bindir" ]]; then
        echo "ensure-postgres: installed postgresql but still no ${BINARIES[*]} found" >&2
        exit 1
    fi
fi

for binary in "${BINARIES[@]}"; do
    path="$bindir/$binary"
    real=$(readlink -f "$path")
    if [[ "$real" != "$path" ]]; then
        printf 'ensure-postgres: %-8s %s -> %s: %s\n' "$binary" "$path" "$real" "$("$path" --version)"
    else
        printf 'ensure-postgres: %-8s %s: %s\n' "$binary" "$path" "$("$path" --version)"
    fi
done
