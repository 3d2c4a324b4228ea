#!/usr/bin/env bash
# Issue 21's measurements on the GPU host (SGLang 0.5.17 from the carried wheelhouse, as gpu_tests.sh):
# the draft pass's GEMMs per weight variant, then AR / ORTHRUS with bf16, fp8 and int4 draft weights / DFLASH
# on the Qwen3-8B shape with pinned acceptance (auto: what ORTHRUS_DRAFT_WEIGHTS=auto picks on the card). One stage per call (each fits a 10-minute device call).
# int4 runs SGLang's Marlin, JIT-compiled on first use: minutes on a cold host (run `gemm --marlin` first).
#
#   bash scripts/gpu_draft_weights.sh gemm OUT [--marlin]   # bench.draft_gemm, M = 16..1024 (+ Marlin: JIT, minutes)
#   bash scripts/gpu_draft_weights.sh speed OUT [CONC]       # bench.throughput, default concurrency 1,8,32,64
#     MODES=ar,orthrus,orthrus-fp8,orthrus-int4,dflash (default ar,orthrus,orthrus-auto,dflash); DEADLINE=s (0: none);
#     REPEATS (default 1: one run per cell; 2+: the median and the spread), REQUESTS (default max(c, 2))
#   bash scripts/gpu_draft_weights.sh profile OUT [CONC]     # bench.profile_step, bf16 / fp8 / int4 drafts, default 1
#
# OUT: where results go (e.g. $OUT on the device machine). The server's log line "ORTHRUS fp8 drafts
# (w8a8 GEMM): ... GB allocated, ... GB reserved" (int4: marlin) says what the copies cost.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
  sed -n '2,13p' "$0" >&2
  exit 2
fi
STAGE=$1 OUT=$2
shift 2
source scripts/gpu_site.sh
mkdir -p "$OUT"
case $STAGE in
  gemm)
    VARIANTS=bf16,fp8-torch,w8a8
    if [ "${1:-}" = "--marlin" ]; then VARIANTS=$VARIANTS,marlin-fp8,marlin-int4; fi
    python -m bench.draft_gemm --variants "$VARIANTS" --out "$OUT/draft_gemm" ;;
  speed)
    # SIGINT at the deadline: bench.throughput then writes what it measured so far
    timeout -s INT "${DEADLINE:-0}" python -m bench.throughput --backend sglang --modes "${MODES:-ar,orthrus,orthrus-auto,dflash}" --block-sizes 16 \
      --simulate-tau 9.6 --dflash-tau 6.49 --concurrency "${1:-1,8,32,64}" --contexts "" --out-len 256 \
      --repeats "${REPEATS:-1}" ${REQUESTS:+--requests "$REQUESTS"} \
      --log-level info --no-plots --out-dir "$OUT/throughput" 2>&1 | tee "$OUT/throughput.log" | { grep -v " INFO " || true; } \
      || echo "bench.throughput stopped early (its results so far are in $OUT/throughput)"
    grep -h "ORTHRUS .* drafts (\|DRAFT_WEIGHTS=auto\|KV Cache is allocated\|Load weight end" "$OUT/throughput.log" || true ;;
  profile)
    for drafts in ${DRAFTS:-bf16 fp8 int4}; do
      python -m bench.profile_step --mode orthrus --pin-tau 9.6 --block-size 16 --concurrency "${1:-1}" \
        --attention-backend flashinfer --draft-weights $drafts --out "$OUT/profile_$drafts" | tee "$OUT/profile_$drafts.txt"
    done ;;
  *) echo "unknown stage $STAGE (gemm, speed, profile)" >&2; exit 2 ;;
esac
