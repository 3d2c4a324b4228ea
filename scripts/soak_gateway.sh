#!/usr/bin/env bash
# The full gateway soak (issue 24), one command: 1,000 mixed requests through `python -m orthrus_server --backend sglang`
# in front of a real SGLang CPU server, SGLang SIGKILLed and restarted under load, 200 more; then the same load
# through sglang-router with one of two replicas killed mid-soak. `python -m pytest` (CI) runs both with 300.
#   bash scripts/soak_gateway.sh [REQUESTS]      (default 1000; the reports print to stdout)
set -euo pipefail
cd "$(dirname "$0")/.."
export ORTHRUS_SOAK_REQUESTS="${1:-1000}"
exec python -m pytest -s -q -p no:cacheprovider tests/sgl/test_gateway_soak_cpu.py \
    tests/sgl/test_router_cpu.py::test_soak_through_the_router_with_a_replica_killed
