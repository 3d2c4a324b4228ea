#!/usr/bin/env bash
# Train the demo model's diffusion view on a GPU host, in one command that can be rerun to resume.
#
#   bash scripts/gpu_train_demo.sh SRC OUT [--wheels DIR] [--results DIR] [train_demo.py flags...]
#
# SRC: SmolLM2-135M-Instruct.Q4_1.gguf (or its path prefix when split into SRC.part-aa, -ab, ...),
#      or a plain HF checkpoint directory (the CPU rehearsal: a tiny random Llama).
# OUT: a work dir that survives between invocations (stages and training resume from it).
# --wheels DIR: wheels to install when a package is missing (gguf: transformers' GGUF reader,
#      used by demo.py's build; the GPU image has no gguf). Not needed when gguf is importable
#      or when the demo build no longer reads GGUF through transformers.
# --results DIR: where to copy the deliverables (results.json, tau_curve.png, the view artefact
#      and its json, train_log.jsonl, comparison.json).
# Every other flag goes to scripts/train_demo.py (--deadline-min, --time-budget-min, ...).
# Exit 0: all stages done. Exit 3: stopped at --deadline-min; run the same command again.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
  sed -n '2,17p' "$0" >&2
  exit 2
fi
SRC=$1 OUT=$2
shift 2
WHEELS=""
PASS=()
while [ $# -gt 0 ]; do
  case $1 in
    --wheels) WHEELS=$2; shift 2 ;;
    *) PASS+=("$1"); shift ;;
  esac
done
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}:$OUT/site"  # $OUT/site: wheels installed by an earlier run
export PYTHONUNBUFFERED=1

if [ -d "$SRC" ]; then
  SOURCE=(--plain "$SRC")
else
  SOURCE=(--gguf "$SRC")
  if ! "$PYTHON" -c "import gguf" 2>/dev/null; then
    if [ -n "$WHEELS" ]; then
      echo "[gpu_train_demo] installing $(ls "$WHEELS"/*.whl | xargs -n1 basename | tr '\n' ' ')from $WHEELS" >&2
      "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target "$OUT/site" "$WHEELS"/*.whl ||
        echo "[gpu_train_demo] warning: could not install the wheels from $WHEELS" >&2
    else
      echo "[gpu_train_demo] note: no gguf package and no --wheels; fine only if the demo build does not need it" >&2
    fi
  fi
fi

set +e
"$PYTHON" scripts/train_demo.py "${SOURCE[@]}" --out "$OUT" "${PASS[@]}"
rc=$?
set -e
case $rc in
  0) echo "[gpu_train_demo] done: $OUT/results.json" >&2 ;;
  3) echo "[gpu_train_demo] stopped at the deadline; run the same command again to continue" >&2 ;;
  *) echo "[gpu_train_demo] failed (exit $rc)" >&2 ;;
esac
exit $rc
