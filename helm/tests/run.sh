#!/usr/bin/env bash
# Helm chart tests, unattended (CI): renders helm/leadbridge with Helm's own
# engine (helm-python-sdk) for every ci/*.yaml scenario, validates every
# object against the Kubernetes JSON schemas (kubernetes-validate, strict,
# offline), lints the chart, checks what each scenario must produce, and runs
# `leadbridge check` (target/debug, or LEADBRIDGE_BIN) on each rendering and
# on every-key/*.yaml. With a release build (or LEADBRIDGE_IMAGE_ROOTFS) and
# root, test_image.py runs every scenario in the image's filesystem too.
# Needs python3 >= 3.11 and PyPI.
#
#   bash helm/tests/run.sh [pytest args...]
#
# The virtualenv is kept between runs under ${TMPDIR:-/tmp} (keyed by the
# hash of requirements.txt); LEADBRIDGE_HELM_VENV overrides its location.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
req="$here/requirements.txt"
python="${PYTHON:-python3}"

if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "helm/tests/run.sh: needs Python >= 3.11 (found: $("$python" --version 2>&1))" >&2
  exit 2
fi

stamp="$(sha256sum "$req" | cut -c1-16)"
venv="${LEADBRIDGE_HELM_VENV:-${TMPDIR:-/tmp}/leadbridge-helm-tests-$stamp}"

# One installer at a time when runs overlap.
exec 9>"$venv.lock"
flock 9
if [ ! -f "$venv/.installed" ]; then
  echo "helm/tests/run.sh: creating $venv" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
  touch "$venv/.installed"
fi
flock -u 9

cd "$repo"
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider helm/tests "$@"
