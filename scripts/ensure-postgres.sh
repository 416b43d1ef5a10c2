#!/usr/bin/env bash
# Make sure the PostgreSQL server binaries (initdb, pg_ctl, postgres) exist, installing
# Debian's `postgresql` package when they don't. The tests never use a system service: their
# fixture (tests/pg/cluster.py) runs its own throwaway cluster from these binaries, and it
# looks for them the same way this script does: PATH first, then the highest
# /usr/lib/postgresql/<version>/bin (where Debian puts them, off PATH).
set -euo pipefail

readonly BINARIES=(initdb pg_ctl postgres)
readonly POLICY_RC_D=/usr/sbin/policy-rc.d

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

# Run a command as root: directly when we are root, through sudo otherwise.
as_root() {
    if ((EUID == 0)); then
        "$@"
    else
        sudo "$@"
    fi
}

# Install Debian's `postgresql` package without starting its default cluster's service: a
# policy-rc.d that denies every start is put in place for the install (unless one exists).
install_postgres() {
    if ((EUID != 0)) && ! command -v sudo >/dev/null 2>&1; then
        echo "ensure-postgres: not root and no sudo: cannot install PostgreSQL" >&2
        exit 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "ensure-postgres: no apt-get here: install PostgreSQL's server binaries by hand" >&2
        exit 1
    fi

    local own_policy=0
    if [[ ! -e "$POLICY_RC_D" ]]; then
        own_policy=1
        # Removed on every exit path, so the machine's service policy is left as it was.
        trap 'as_root rm -f "$POLICY_RC_D"' EXIT
        printf '#!/bin/sh\n# ensure-postgres.sh: no services started during its install\nexit 101\n' |
            as_root tee "$POLICY_RC_D" >/dev/null
        as_root chmod 755 "$POLICY_RC_D"
    fi

    echo "ensure-postgres: PostgreSQL server binaries not found: installing Debian's postgresql"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends postgresql

    if ((own_policy)); then
        as_root rm -f "$POLICY_RC_D"
        trap - EXIT
    fi
}

bindir=$(find_bindir)
if [[ -z "$bindir" ]]; then
    install_postgres
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
