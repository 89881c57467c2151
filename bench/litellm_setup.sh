#!/usr/bin/env bash
# Creates bench/.litellm-venv with the LiteLLM proxy, kept apart from the project's own environment.
set -euo pipefail
cd "$(dirname "$0")"
[ -x .litellm-venv/bin/litellm ] && exit 0
python3 -m venv .litellm-venv
.litellm-venv/bin/pip install -q --upgrade pip
.litellm-venv/bin/pip install -q 'litellm[proxy]'
