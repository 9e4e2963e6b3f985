#!/usr/bin/env bash
# Installs what the tests need, idempotently: each step checks first and installs only what is
# missing. Safe to run on a fresh machine and again on a prepared one.
set -euo pipefail

log() { printf 'install-test-deps: %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

apt_updated=""
apt_install() {
  # $@: Debian packages
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  if [ -z "$apt_updated" ]; then
    log "apt-get update"
    $SUDO apt-get update -qq
    apt_updated=1
  fi
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# promtool (Debian's prometheus package); setpriv (util-linux) for the other-user cases.
command -v promtool >/dev/null || apt_install prometheus
command -v setpriv >/dev/null || apt_install util-linux
# Node.js: the machine ships node 20; fall back to Debian's if it is missing.
command -v node >/dev/null || apt_install nodejs

log "node $(node --version), $(promtool --version 2>&1 | head -n1)"
