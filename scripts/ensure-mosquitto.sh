#!/usr/bin/env bash
# Make sure the Mosquitto broker (`mosquitto`, with `mosquitto_passwd`) exists, installing
# Debian's `mosquitto` package when it doesn't. The tests never use a system service: their
# fixture (tests/support/mosquitto.py) runs its own broker process on a free loopback port with
# its own configuration file, and it looks for the binary the same way this script does: PATH
# first, then /usr/sbin and /usr/bin (where Debian puts them; /usr/sbin is off a normal user's
# PATH).
set -euo pipefail

readonly BINARIES=(mosquitto mosquitto_passwd)

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

# shellcheck source=debian-install.sh
source "$(dirname "${BASH_SOURCE[0]}")/debian-install.sh"

if ! all_found; then
    echo "ensure-mosquitto: mosquitto not found"
    debian_install ensure-mosquitto mosquitto
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
