#!/usr/bin/env bash
# The tools the deployment tests (tests/test_deploy_*.py) run, installed when missing:
#
#   systemd-analyze  from Debian's `systemd` package (verify and security-rate the unit,
#                    expand its system call groups)
#   <asm/unistd.h>   from Debian's `linux-libc-dev`: system call numbers, to build the unit's
#                    seccomp filters in tests/test_deploy_systemd.py
#   helm             built from source through the Go module proxy into .cache/bin/helm
#                    (lint and render the chart); needs Go 1.22 or newer on PATH
#
# The chart's rendered manifests are validated with kubernetes-validate, a Python package in
# the project's `test` extra (pyproject.toml), so the virtualenv already has it.
#
# First run on a fresh machine: about 5 minutes for helm (some 400 MB of modules downloaded
# into Go's module cache, then compiled on 2 cores). Later runs: nothing when .cache/bin/helm
# is the pinned version; about 10 s (a link from Go's caches) when only the work tree is new.
set -euo pipefail

readonly HELM_VERSION=v3.22.0
# The Kubernetes version helm assumes without a cluster (helm template, lint, install
# --dry-run): helm's own Makefile sets it from its client-go module (v0.37 -> 1.37); a plain
# `go install` would leave it at 1.20, below the chart's kubeVersion.
readonly HELM_KUBE_MINOR=37
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
readonly BIN="$ROOT/.cache/bin"
# Written after a build; a binary built with other settings is built again.
readonly HELM_BUILD="$HELM_VERSION kubernetes-1.$HELM_KUBE_MINOR"
readonly HELM_STAMP="$BIN/helm.build"

as_root() {
    if ((EUID == 0)); then
        "$@"
    else
        sudo "$@"
    fi
}

apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "ensure-deploy-tools: no apt-get here: install Debian's $* by hand" >&2
        exit 1
    fi
    if ((EUID != 0)) && ! command -v sudo >/dev/null 2>&1; then
        echo "ensure-deploy-tools: not root and no sudo: cannot install $*" >&2
        exit 1
    fi
    echo "ensure-deploy-tools: installing Debian's $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

ensure_systemd_analyze() {
    if ! command -v systemd-analyze >/dev/null 2>&1; then
        apt_install systemd
    fi
    echo "ensure-deploy-tools: systemd-analyze: $(systemd-analyze --version | head -n 1)"
}

ensure_syscall_header() {
    local header
    case "$(uname -m)" in
        x86_64) header=/usr/include/x86_64-linux-gnu/asm/unistd_64.h ;;
        aarch64) header=/usr/include/asm-generic/unistd.h ;;
        *)
            echo "ensure-deploy-tools: no system call table known for $(uname -m)" >&2
            exit 1
            ;;
    esac
    if [[ ! -f "$header" ]]; then
        apt_install linux-libc-dev
    fi
    echo "ensure-deploy-tools: system call numbers: $header"
}

helm_version() {
    "$BIN/helm" version --template '{{.Version}}' 2>/dev/null || true
}

ensure_helm() {
    if [[ -x "$BIN/helm" && "$(helm_version)" == "$HELM_VERSION" &&
        "$(cat "$HELM_STAMP" 2>/dev/null)" == "$HELM_BUILD" ]]; then
        echo "ensure-deploy-tools: helm $HELM_VERSION: $BIN/helm"
        return
    fi
    if ! command -v go >/dev/null 2>&1; then
        echo "ensure-deploy-tools: helm is built with Go, and there is no go on PATH" >&2
        exit 1
    fi
    echo "ensure-deploy-tools: building helm $HELM_VERSION into $BIN" \
        "(about 5 minutes the first time, seconds once Go's caches have it)"
    mkdir -p "$BIN"
    local started=$SECONDS
    rm -f "$HELM_STAMP"
    # The same -X settings as helm's Makefile: its version, and the default Kubernetes version.
    local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    local package
    for package in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
        ldflags+=" -X $package.k8sVersionMajor=1 -X $package.k8sVersionMinor=$HELM_KUBE_MINOR"
    done
    CGO_ENABLED=0 GOBIN="$BIN" GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false" go install \
        -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
    if [[ "$(helm_version)" != "$HELM_VERSION" ]]; then
        echo "ensure-deploy-tools: built helm reports '$(helm_version)', not $HELM_VERSION" >&2
        exit 1
    fi
    printf '%s\n' "$HELM_BUILD" >"$HELM_STAMP"
    echo "ensure-deploy-tools: helm $HELM_VERSION built in $((SECONDS - started)) s: $BIN/helm"
}

ensure_systemd_analyze
ensure_syscall_header
ensure_helm
