#!/usr/bin/env bash
# The browser test (tests/test_review_html.py) drives Debian's chromium through Playwright; Playwright's
# own browser download is not used. Installs chromium when it is missing (needs root, or says what to do).
set -euo pipefail
CHROMIUM=/usr/bin/chromium
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "setup_browser: $CHROMIUM is missing; install it as root: apt-get install chromium" >&2
  exit 1
fi
echo "setup_browser: installing chromium (Debian package) for the HTML review test"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
[ -x "$CHROMIUM" ] || { echo "setup_browser: apt-get installed chromium but $CHROMIUM is still missing" >&2; exit 1; }
