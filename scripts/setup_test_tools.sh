#!/usr/bin/env bash
# System tools the tests drive, from Debian's packages: chromium (tests/test_review_html.py, through
# Playwright; Playwright's own browser download is not used) and tmux (tests/test_chat_terminal.py runs
# the chat in a real pseudo-terminal). Installs what is missing (needs root, or says what to do).
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "setup_test_tools: missing ${missing[*]}; install as root: apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "setup_test_tools: installing ${missing[*]} (Debian packages) for the tests"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
[ -x /usr/bin/chromium ] && command -v tmux >/dev/null 2>&1 || {
  echo "setup_test_tools: apt-get ran but chromium or tmux is still missing" >&2; exit 1; }
