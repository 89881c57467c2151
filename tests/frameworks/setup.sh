#!/usr/bin/env bash
# Creates tests/frameworks/.venv with LangChain and LlamaIndex (requirements.txt), apart from the
# project's .venv. Quick when it is already there and newer than requirements.txt.
set -euo pipefail
cd "$(dirname "$0")"
stamp=.venv/.installed
if [ -f "$stamp" ] && [ "$stamp" -nt requirements.txt ]; then exit 0; fi
"${PYTHON:-python3}" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
touch "$stamp"
