#!/usr/bin/env bash
# The system packages emostream's tests use. As root (CI) they are installed with apt-get;
# otherwise one message names what is missing, and the tests that need it skip with a reason.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have java || need+=(openjdk-17-jre-headless)
have mvn || need+=(maven)
have espeak-ng || need+=(espeak-ng)
have sox || need+=(sox)
have kcat || need+=(kcat)
have chromium || need+=(chromium)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && have apt-get; then
  echo "installing system packages: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "emostream: missing system packages: ${need[*]}; install them with 'sudo apt-get install ${need[*]}' (tests that need them are skipped)" >&2
fi
