#!/usr/bin/env bash
# Issue 18's measurements on the GPU host (SGLang 0.5.17 from the carried wheelhouse, as gpu_tests.sh):
# is ORTHRUS's step worth it under load and sampling? One stage per 10-minute device call; JIT caches
# (flashinfer, Triton, tvm-ffi) under /tmp/home, so later calls on the same warm host skip the compiles.
# Every cell warms up untimed, runs --repeats 3 with fresh prompts (median and spread: the noise).
#
#   bash scripts/gpu_step_cost.sh small OUT     # demo shape (smollm2-135m), acceptance 0.7/draft, B=16, T=0 and 0.7,
#                                               # c1/8/32/64: AR, AR steps through ORTHRUS (B=1), eager acceptance, accept graphs,
#                                               # adaptive + accept graphs, drafts from q + accept graphs
#   bash scripts/gpu_step_cost.sh shape8b OUT   # Qwen3-8B shape, acceptance 0.93/draft: AR, adaptive <= 16, B=16, B=8, DFLASH 6.49
#   bash scripts/gpu_step_cost.sh profile OUT   # bench.profile_step on the demo shape at c32, T=0.7: eager vs accept graphs
#   bash scripts/gpu_step_cost.sh demo OUT GGUF # the trained demo through SGLang, real acceptance (the issue's table):
#                                               # GGUF = the file or its prefix when carried as GGUF.part-* (two calls)
#   bash scripts/gpu_step_cost.sh host OUT      # py-spy on the schedulers (bench.host_profile): where a step's host time
#                                               # goes, demo shape, c1 greedy: AR, AR steps (B=1), ORTHRUS B=16. Needs
#                                               # py-spy: a carried wheel in .gpu/whl (docs/tests.md) if not installed
#
# MODES, CONC, REQUESTS (default 4x), REPEATS (default 3), DEADLINE (seconds; SIGINT then: the cells measured so far are written).
# On a cold host the first flashinfer engine takes ~5 minutes (JIT: 2.5 to start, 2.5 in its first cell; H100,
# 2026-12-08) before anything is timed: give the first call's DEADLINE that much more.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
  sed -n '2,18p' "$0" >&2
  exit 2
fi
STAGE=$1 OUT=$2
export HOME=${GPU_HOME:-/tmp/home}  # the JIT caches (~/.cache, ~/.triton) with the install in /tmp
mkdir -p "$HOME" "$OUT"
source scripts/gpu_site.sh
common=(--backend sglang --attention-backend flashinfer --contexts "" --no-plots --requests "${REQUESTS:-4x}"
        --repeats "${REPEATS:-3}")
run() {  # bench.throughput under the deadline; what it measured before SIGINT is still written
  timeout -s INT -k 30 "${DEADLINE:-0}" python -m bench.throughput "${common[@]}" "$@" || \
    echo "bench.throughput stopped early (its results so far are in the --out-dir)"
}
case $STAGE in
  small)
    run --shape smollm2-135m --modes "${MODES:-ar,orthrus-ar-steps,orthrus,orthrus-ag,orthrus-adaptive-ag,orthrus-sd-ag}" \
      --block-sizes 16 --simulate-accept-rate 0.7 --temperature 0,0.7 --concurrency "${CONC:-1,8,32,64}" \
      --out-len 96 --out-dir "$OUT/small" > "$OUT/small.log" 2>&1
    grep -E "^\| (AR|ORTHRUS)" "$OUT/small/results.md" | head -60 || true ;;
  shape8b)
    run --shape qwen3-8b --modes "${MODES:-ar,orthrus-adaptive,orthrus,dflash}" --block-sizes 16,8 \
      --simulate-accept-rate 0.93 --dflash-tau 6.49 --concurrency "${CONC:-1,8,32,64}" --out-len 256 \
      --out-dir "$OUT/shape8b" > "$OUT/shape8b.log" 2>&1
    grep -E "^\| (AR|ORTHRUS|DFLASH)" "$OUT/shape8b/results.md" | head -60 || true ;;
  profile)
    for flags in "" "--accept-graphs"; do
      python -m bench.profile_step --mode orthrus --shape smollm2-135m --block-size 16 --accept-rate 0.7 \
        --temperature 0.7 --concurrency 32 --steps 20 --attention-backend flashinfer $flags \
        --out "$OUT/profile" > "$OUT/profile${flags:+_ag}.log" 2>&1 || echo "profile $flags failed"
      grep -v "^\[" "$OUT/profile${flags:+_ag}.log" | tail -30
    done
    rm -f "$OUT"/profile/*.trace.json* ;;
  demo)
    GGUF=${3:?demo needs the GGUF path (or its .part-* prefix)}
    timeout -s INT -k 30 "${DEADLINE:-0}" python -m bench.demo_sglang --gguf "$GGUF" --no-identity \
      --modes "${MODES:-ar,orthrus-ar-steps,orthrus,orthrus-adaptive-ag,orthrus-ag,orthrus-sd-ag}" --prompts 64 \
      --c1-prompts 8 --max-new-tokens 256 --concurrency "${CONC:-1,8,32,64}" --temperature 0.7 \
      --out-dir "$OUT/demo" > "$OUT/demo.log" 2>&1 || echo "bench.demo_sglang stopped early (results.json keeps every run so far)"
    grep "^\[demo_sglang\]" "$OUT/demo.log" | tail -60 || true ;;
  host)
    command -v py-spy >/dev/null || pip install --quiet --no-index --no-deps --target "$SITE" .gpu/whl/py_spy-*.whl
    export PATH=$SITE/bin:$PATH
    # One bench run, one engine (scheduler process) per mode in this order; py-spy follows them all (-s).
    timeout -s INT -k 30 "${DEADLINE:-0}" py-spy record -s -r 200 -f raw -o "$OUT/host.txt" -- \
      python -m bench.throughput "${common[@]}" --shape smollm2-135m --modes "${MODES:-ar,orthrus-ar-steps,orthrus}" \
      --block-sizes 16 --simulate-accept-rate 0.7 --temperature 0 --concurrency "${CONC:-1}" --out-len 256 \
      --out-dir "$OUT/host" > "$OUT/host.log" 2>&1 || echo "py-spy or the bench stopped early"
    python -m bench.host_profile "$OUT/host.txt" --rate 200 | tee "$OUT/host.md"
    grep -E "^\| (AR|ORTHRUS)" "$OUT/host/results.md" | head -12 || true ;;
  *) echo "unknown stage $STAGE (small, shape8b, profile, demo, host)" >&2; exit 2 ;;
esac
