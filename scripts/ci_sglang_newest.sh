#!/usr/bin/env bash
# CI: the SGLang CPU tests on the newest SGLang we support (0.5.23), beside the full tests/sgl on
# 0.5.17 in the main environment (the GPU host's version). Its own venv, installed by
# scripts/install_sglang_cpu.sh (idempotent: a second run only checks).
#
# The subset runs every name and helper of orthrus_sglang/sgl/compat.py end to end that can run
# on CPU (registration, server-args resolution and refusals, the step, verify/draft inputs, the
# three hooks, logit_bias, grammar, logprobs, pinned acceptance, TP=2, metrics, block size per step) and resolves the
# GPU-only ones by name (test_compat_cpu.py). The sampling chi-square tests stay on 0.5.17.
#
#   bash scripts/ci_sglang_newest.sh      # env: SGLANG_NEWEST (0.5.23), SGLANG_NEWEST_VENV
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${SGLANG_NEWEST:-0.5.23}
VENV=${SGLANG_NEWEST_VENV:-${TMPDIR:-/tmp}/orthrus-sglang-$VERSION}
start=$SECONDS
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
SGLANG_VERSION=$VERSION PYTHON="$VENV/bin/python" bash scripts/install_sglang_cpu.sh
"$VENV/bin/python" -m pip install --disable-pip-version-check -q -e ".[test]"
echo "[ci_sglang_newest] sglang $VERSION environment ready in $((SECONDS - start)) s"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider \
  tests/sgl/test_compat_cpu.py tests/sgl/test_orthrus_engine_cpu.py tests/sgl/test_grammar_cpu.py \
  tests/sgl/test_tp_cpu.py tests/sgl/test_plugin_cpu.py tests/sgl/test_block_policy_cpu.py \
  -k "not exact_ar_distribution and not llama and not exact_ar_law"
echo "[ci_sglang_newest] done in $((SECONDS - start)) s"
