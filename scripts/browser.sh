#!/usr/bin/env bash
# Install Chromium (Debian's package) for the viewer's end-to-end browser tests. Playwright drives it
# through executable_path; its own browser download is not used. Idempotent: a no-op once installed.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "scripts/browser.sh: install Debian's chromium package to run the browser tests." >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
