#!/usr/bin/env bash
# The GPU test suite, on the offline GPU host (docs/tests.md, "The GPU suite"): installs SGLang 0.5.17 from the
# carried wheelhouse and this package into /tmp/site, then runs tests/gpu (extra args go to pytest).
#   bash scripts/gpu_tests.sh                 # everything
#   bash scripts/gpu_tests.sh -k "b_ or c_"   # a subset
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu_site.sh
python -m pytest tests/gpu -v -s -p no:cacheprovider -W ignore::DeprecationWarning "$@"
