# Sourced by the ensure-*.sh scripts: install Debian packages the tests need, without starting
# any service they bring (a policy-rc.d that denies every start is in place for the install,
# unless the machine has one, and is removed on every exit path).
#
#   debian_install NAME PACKAGE...   # NAME prefixes the messages (ensure-postgres, ...)

readonly DEBIAN_POLICY_RC_D=/usr/sbin/policy-rc.d

# Run a command as root: directly when we are root, through sudo otherwise.
as_root() {
    if ((EUID == 0)); then
        "$@"
    else
        sudo "$@"
    fi
}

debian_install() {
    local name=$1
    shift
    if ((EUID != 0)) && ! command -v sudo >/dev/null 2>&1; then
        echo "$name: not root and no sudo: cannot install $*" >&2
        exit 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "$name: no apt-get here: install $* by hand" >&2
        exit 1
    fi
    local own_policy=0
    if [[ ! -e "$DEBIAN_POLICY_RC_D" ]]; then
        own_policy=1
        trap 'as_root rm -f "$DEBIAN_POLICY_RC_D"' EXIT
        printf '#!/bin/sh\n# %s: no services started during its install\nexit 101\n' "$name" |
            as_root tee "$DEBIAN_POLICY_RC_D" >/dev/null
        as_root chmod 755 "$DEBIAN_POLICY_RC_D"
    fi
    echo "$name: installing Debian's $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
    if ((own_policy)); then
        as_root rm -f "$DEBIAN_POLICY_RC_D"
        trap - EXIT
    fi
}
