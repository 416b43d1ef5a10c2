#!/usr/bin/env bash
# Make sure a headless browser and its WebDriver exist for the status page's browser test
# (tests/test_status_page_browser.py): Debian's `chromium` and `chromium-driver`, installed when
# missing. The test looks for them the same way this script does: $CHROMIUM / $CHROMEDRIVER,
# then PATH, then /usr/bin and /usr/lib/chromium (where Debian puts them). Nothing is downloaded
# from anywhere but Debian's packages: Selenium is always handed the driver's path, so its own
# driver manager never runs.
set -euo pipefail

# Print the first of the given paths/names that is an executable file; nothing when none is.
find_executable() {
    local candidate found
    for candidate in "$@"; do
        [[ -n "$candidate" ]] || continue
        if [[ "$candidate" != */* ]]; then
            found=$(command -v "$candidate" 2>/dev/null || true)
            [[ -n "$found" ]] || continue
            candidate=$found
        fi
        if [[ -x "$candidate" && ! -d "$candidate" ]]; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
}

find_chromium() {
    find_executable "${CHROMIUM:-}" chromium chromium-browser /usr/bin/chromium \
        /usr/lib/chromium/chromium
}

find_driver() {
    find_executable "${CHROMEDRIVER:-}" chromedriver /usr/bin/chromedriver \
        /usr/lib/chromium/chromedriver
}

# shellcheck source=debian-install.sh
source "$(dirname "${BASH_SOURCE[0]}")/debian-install.sh"

if [[ -z "$(find_chromium)" || -z "$(find_driver)" ]]; then
    echo "ensure-browser: chromium or chromedriver not found (CHROMIUM, CHROMEDRIVER may name them)"
    debian_install ensure-browser chromium chromium-driver fonts-dejavu-core
fi
chromium=$(find_chromium)
driver=$(find_driver)
if [[ -z "$chromium" || -z "$driver" ]]; then
    echo "ensure-browser: installed chromium and chromium-driver but still no browser/driver" >&2
    exit 1
fi
# (Debian's launcher script may warn on stderr about its own settings: the version is stdout.)
if ! browser_version=$("$chromium" --version 2>/dev/null | head -n 1) || [[ -z "$browser_version" ]]; then
    echo "ensure-browser: $chromium does not run: $browser_version" >&2
    exit 1
fi
if ! driver_version=$("$driver" --version 2>&1 | head -n 1); then
    echo "ensure-browser: $driver does not run: $driver_version" >&2
    exit 1
fi
echo "ensure-browser: $chromium: $browser_version"
echo "ensure-browser: $driver: $driver_version"
