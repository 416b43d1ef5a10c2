#!/usr/bin/env bash
# Make sure the Mosquitto broker (`mosquitto`, with `mosquitto_passwd`) exists, installing
# Debian's `mosquitto` package when it doesn't. The tests never use a system service: their
# fixture (tests/support/mosquitto.py) runs its own broker process on a free loopback port with
# its own configuration file, and it looks for the binary the same way this script does: PATH
# first, then /usr/sbin and /usr/bin (where Debian puts them; /usr/sbin is off a normal user's
# PATH).
set -euo pipefail

readonly BINARIES=(mosquitto mosquitto_passwd)
readonly POLICY_RC_D=/usr/sbin/policy-rc.d

# Print where a binary is: PATH order, then /usr/sbin and /usr/bin (Debian puts the broker in
# /usr/sbin and mosquitto_passwd in /usr/bin). Prints nothing when there is none.
find_binary() {
    local dir candidates=()
    local IFS=:
    for dir in $PATH; do
        candidates+=("${dir:-.}")
    done
    unset IFS
    candidates+=(/usr/sbin /usr/bin)
    for dir in "${candidates[@]}"; do
        if [[ -x "$dir/$1" && ! -d "$dir/$1" ]]; then
            printf '%s\n' "$dir/$1"
            return 0
        fi
    done
}

# Whether every one of BINARIES is found.
all_found() {
    local binary
    for binary in "${BINARIES[@]}"; do
        [[ -n "$(find_binary "$binary")" ]] || return 1
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

# Install Debian's `mosquitto` package without starting its service: a policy-rc.d that denies
# every start is put in place for the install (unless one exists).
install_mosquitto() {
    if ((EUID != 0)) && ! command -v sudo >/dev/null 2>&1; then
        echo "ensure-mosquitto: not root and no sudo: cannot install Mosquitto" >&2
        exit 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "ensure-mosquitto: no apt-get here: install the Mosquitto broker by hand" >&2
        exit 1
    fi

    local own_policy=0
    if [[ ! -e "$POLICY_RC_D" ]]; then
        own_policy=1
        # Removed on every exit path, so the machine's service policy is left as it was.
        trap 'as_root rm -f "$POLICY_RC_D"' EXIT
        printf '#!/bin/sh\n# ensure-mosquitto.sh: no services started during its install\nexit 101\n' |
            as_root tee "$POLICY_RC_D" >/dev/null
        as_root chmod 755 "$POLICY_RC_D"
    fi

    echo "ensure-mosquitto: mosquitto not found: installing Debian's mosquitto"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends mosquitto

    if ((own_policy)); then
        as_root rm -f "$POLICY_RC_D"
        trap - EXIT
    fi
}

if ! all_found; then
    install_mosquitto
    if ! all_found; then
        echo "ensure-mosquitto: installed mosquitto but still not all of ${BINARIES[*]} found" >&2
        exit 1
    fi
fi

broker=$(find_binary mosquitto)
# `mosquitto -h` prints its version on the first line and exits 3: not an error here.
version=$("$broker" -h 2>&1 | head -n 1 || true)
printf 'ensure-mosquitto: %s: %s\n' "$broker" "$version"
printf 'ensure-mosquitto: %s\n' "$(find_binary mosquitto_passwd)"
