#!/usr/bin/env bash
# Creates tests/frameworks/.venv with LangChain and LlamaIndex (requirements.txt), apart from the
# project's .venv. Quick when it is already there and newer than requirements.txt. Runs one at a time
# (a lock in .venv): tests/conftest.py starts it in the background at the start of a run, and the
# fixture that needs it runs it again, which waits for that one and then finds the stamp.
set -euo pipefail
cd "$(dirname "$0")"
stamp=.venv/.installed
mkdir -p .venv
exec 9>.venv/.setup.lock
flock 9
if [ -f "$stamp" ] && [ "$stamp" -nt requirements.txt ]; then exit 0; fi
"${PYTHON:-python3}" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# No byte-compiling of every installed file: the apps compile the modules they import, once.
.venv/bin/python -m pip install -q --no-compile -r requirements.txt
touch "$stamp"
