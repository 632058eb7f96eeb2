#!/usr/bin/env bash
# Create the virtualenv and install emostream (editable) with the given extras: what `make demo`
# and `make test` run first. Usage: scripts/install.sh VENV EXTRAS [PYTHON]
#
# Fast path (measured in a fresh clone of this repo on the 2-core dev VM): a venv without pip
# (0.2 s instead of ~6 s for ensurepip), uv from PyPI, then uv installs the ~380 MB of wheels and
# compiles their bytecode in ~11 s, where pip took ~30 s. The bytecode matters: where
# PYTHONDONTWRITEBYTECODE is set (CI), nothing would write it later, and every Python process the
# suite starts (workers, CLIs, devices) would compile numpy & co. again (+0.3 s of CPU for a worker).
# If any step of it fails, pip does the whole install instead.
set -euo pipefail
venv=${1:?usage: install.sh VENV EXTRAS [PYTHON]}
extras=${2:?usage: install.sh VENV EXTRAS [PYTHON]}
python=${3:-python3}
bin=$venv/bin

with_uv() {
  [ -x "$bin/python" ] || "$python" -m venv --without-pip "$venv"
  if [ ! -x "$bin/uv" ]; then
    # The host's pip can install into the venv (pip >= 22.3); else the venv gets its own pip first.
    "$python" -m pip --python "$bin/python" install -q 'uv>=0.4' 2>/dev/null \
      || { "$bin/python" -m ensurepip >/dev/null && "$bin/python" -m pip install -q 'uv>=0.4'; }
  fi
  # pip too, so '.venv/bin/pip install ...' works as in any venv.
  "$bin/uv" pip install -q --compile-bytecode --python "$bin/python" pip -e ".[$extras]"
}

with_pip() {
  [ -x "$bin/python" ] || "$python" -m venv "$venv"
  "$bin/python" -m pip --version >/dev/null 2>&1 || "$bin/python" -m ensurepip >/dev/null
  "$bin/python" -m pip install -q -e ".[$extras]"
}

if ! with_uv; then
  echo "install.sh: the uv install failed (above); installing with pip instead" >&2
  with_pip
fi
