#!/usr/bin/env bash
# Installs what tests/browser/ needs on a clean Debian machine, non-interactively:
# Debian's chromium (and chromium-driver, for anyone driving it through WebDriver).
#
# The browser test itself drives Chromium over the Chrome DevTools Protocol with the Python
# `websockets` package the server already depends on (tests/browser/cdp.py), so no npm package
# and no browser download (e.g. `npx playwright install`) is needed.
#
# Usage: bash .ci/browser-setup.sh        (root, or a user with sudo)
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    echo "browser-setup: $(chromium --version 2>/dev/null) already installed"
    exit 0
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
echo "browser-setup: $(chromium --version 2>/dev/null) installed"
