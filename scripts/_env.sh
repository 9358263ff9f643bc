# Sourced by main.sh and test.sh: create .venv if missing and install jaxfne with its dev extra.
# Re-installs only when pyproject.toml changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "jaxfne: creating .venv with $($PY --version)" >&2
  "$PY" -m venv .venv
fi
STAMP=.venv/.jaxfne-installed
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
  echo "jaxfne: installing (pip install -e '.[dev]')" >&2
  .venv/bin/python -m pip install -q --upgrade pip >&2
  .venv/bin/python -m pip install -q -e '.[dev]' >&2
  # let `jupyter nbconvert --execute NOTEBOOK` (as on the tutorial page) work without --to
  mkdir -p .venv/etc/jupyter
  echo '{"NbConvertApp": {"export_format": "notebook"}}' > .venv/etc/jupyter/jupyter_nbconvert_config.json
  touch "$STAMP"
fi
