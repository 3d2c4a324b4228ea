#!/usr/bin/env bash
# Install real SGLang (default 0.5.17; SGLANG_VERSION=0.5.23 for the newest verified release) into
# the CURRENT Python environment of a CPU-only machine, for the CI tests of our SGLang plugin
# (tests/sgl/). docs/design.md ("SGLang on a CPU machine") says why each step is needed.
#
#   1. torch + torchvision from PyPI at the versions this SGLang pins (CUDA builds, but they run
#      on CPU; TORCH_PINS below);
#   2. sglang==$SGLANG_VERSION --no-deps (its wheel lists CUDA-only packages as core requirements
#      and has no CPU extra);
#   3. sglang's own core requirements, read from the installed wheel's METADATA (Requires-Dist
#      lines without an `extra ==` marker whose environment marker holds here), minus the
#      CUDA-only packages in CUDA_ONLY below;
#   4. the pure-Python `sgl_kernel` stand-in from ci/sgl_kernel_cpu (sgl_kernel has no CPU build).
#
# Idempotent: each step is skipped when what it installs is already there, so a second run takes
# seconds. Use:
#   bash scripts/install_sglang_cpu.sh                              # 0.5.17 into `python`
#   SGLANG_VERSION=0.5.23 PYTHON=/tmp/venv523/bin/python bash scripts/install_sglang_cpu.sh
set -euo pipefail

PYTHON=${PYTHON:-python}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHIM_DIR="$ROOT/ci/sgl_kernel_cpu"

SGLANG_VERSION=${SGLANG_VERSION:-0.5.17}
# torch is pinned exactly by each sglang wheel; torchvision is the release built for that torch.
case "$SGLANG_VERSION" in
  0.5.17) TORCH_PINS=(torch==2.11.0 torchvision==0.26.0) ;;
  0.5.23) TORCH_PINS=(torch==2.14.1 torchvision==0.29.1) ;;
  *) echo "[install_sglang_cpu] SGLANG_VERSION=$SGLANG_VERSION: no torch pins known; add a line" \
          "to TORCH_PINS here (its wheel's Requires-Dist torch== and the matching torchvision)" >&2
     exit 2 ;;
esac
# sglang core requirements that are CUDA-only (or only used by CUDA/multimodal paths) and are not
# installed on CPU: the union over the versions above (a name a version does not list is a no-op).
# Names are compared after PEP 503 normalisation.
CUDA_ONLY=(
  cuda-python flash-attn-4 flashinfer_python helion humming-kernels nvidia-cutlass-dsl
  nvidia-mathdx quack-kernels sgl-deep-gemm sglang-kernel tilelang tokenspeed_mla
  torch_memory_saver torchaudio torchcodec timm apache-tvm-ffi
  nvshmem4py-cu13 sgl-deep-ep sgl-flash-mla  # 0.5.23
)

PIP=("$PYTHON" -m pip install --disable-pip-version-check)
log() { echo "[install_sglang_cpu] $*"; }
t_start=$SECONDS

# Helper: do the installed distributions satisfy every requirement given as an argument?
# Exit 0 when all are satisfied; prints the unsatisfied ones otherwise. Uses pip's vendored
# `packaging`, so it works before anything else is installed.
satisfied() {
  "$PYTHON" - "$@" <<'PY'
import sys
from importlib import metadata
try:
    from packaging.requirements import Requirement
except ImportError:  # a bare venv: pip always vendors packaging
    from pip._vendor.packaging.requirements import Requirement
missing = []
for spec in sys.argv[1:]:
    req = Requirement(spec)
    try:
        have = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        missing.append(f"{spec} (not installed)")
        continue
    if req.specifier and not req.specifier.contains(have, prereleases=True):
        missing.append(f"{spec} (have {have})")
for m in missing:
    print("   needs:", m)
sys.exit(1 if missing else 0)
PY
}

log "python: $("$PYTHON" -c 'import sys; print(sys.executable, sys.version.split()[0])')"

# 1. torch + torchvision ------------------------------------------------------------------
if satisfied "${TORCH_PINS[@]}"; then
  log "1/4 ${TORCH_PINS[*]}: already installed, skipping"
else
  log "1/4 installing ${TORCH_PINS[*]} from PyPI (CUDA build, ~4.7 GB; runs on CPU)"
  "${PIP[@]}" "${TORCH_PINS[@]}"
fi

# 2. sglang itself, without its requirements -----------------------------------------------
if satisfied "sglang==$SGLANG_VERSION"; then
  log "2/4 sglang==$SGLANG_VERSION: already installed, skipping"
else
  log "2/4 installing sglang==$SGLANG_VERSION --no-deps"
  "${PIP[@]}" --no-deps "sglang==$SGLANG_VERSION"
fi

# 3. sglang's core requirements minus the CUDA-only ones -------------------------------------
mapfile -t REQS < <("$PYTHON" - "${CUDA_ONLY[@]}" <<'PY'
import re
import sys
from importlib import metadata
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement

norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
excluded = {norm(n) for n in sys.argv[1:]}
for line in metadata.distribution("sglang").requires or []:
    req = Requirement(line)
    if req.marker is not None:
        if "extra" in str(req.marker):      # extras-only (test, diffusion, ...): never core
            continue
        if not req.marker.evaluate():       # e.g. av/decord2 are aarch64-only
            continue
    if norm(req.name) in excluded:
        continue
    req.marker = None
    print(req)
PY
)
if [ "${#REQS[@]}" -eq 0 ]; then
  echo "[install_sglang_cpu] could not read sglang's requirements from its METADATA" >&2
  exit 1
fi
# Keep torch/torchvision on the pins from step 1 while pip resolves the rest.
REQS+=("${TORCH_PINS[@]}")
if satisfied "${REQS[@]}"; then
  log "3/4 sglang's ${#REQS[@]} CPU requirements: already satisfied, skipping"
else
  log "3/4 installing sglang's CPU requirements (${#REQS[@]}; excluded as CUDA-only: ${CUDA_ONLY[*]}):"
  printf '      %s\n' "${REQS[@]}"
  "${PIP[@]}" "${REQS[@]}"
  # pip may print "sglang X requires flashinfer_python..., which is not installed": expected.
fi

# 4. the sgl_kernel stand-in ---------------------------------------------------------------
# The real CUDA sglang-kernel wheel owns the same import name and cannot load without libcuda.
if "$PYTHON" -c "import importlib.metadata as m; m.version('sglang-kernel')" >/dev/null 2>&1; then
  log "4/4 removing the CUDA-only sglang-kernel (it provides sgl_kernel too and cannot load on CPU)"
  "$PYTHON" -m pip uninstall -y sglang-kernel
fi
# Reinstall when the installed copy differs from ci/sgl_kernel_cpu (file by file), so edits to
# the stand-in reach the environment without a version bump.
if "$PYTHON" - "$SHIM_DIR" <<'PY'
import importlib.util
import pathlib
import sys
from importlib import metadata

src = pathlib.Path(sys.argv[1]) / "sgl_kernel"
try:
    metadata.version("sgl-kernel-cpu-shim")
except metadata.PackageNotFoundError:
    sys.exit(1)
spec = importlib.util.find_spec("sgl_kernel")
if spec is None or not spec.submodule_search_locations:
    sys.exit(1)
dst = pathlib.Path(list(spec.submodule_search_locations)[0])
for f in src.rglob("*.py"):
    g = dst / f.relative_to(src)
    if not g.is_file() or g.read_bytes() != f.read_bytes():
        sys.exit(1)
sys.exit(0)
PY
then
  log "4/4 sgl_kernel stand-in (sgl-kernel-cpu-shim): up to date, skipping"
else
  log "4/4 installing the sgl_kernel stand-in from $SHIM_DIR"
  # Build from a scratch copy: setuptools writes build/ and *.egg-info next to the sources.
  shim_tmp=$(mktemp -d)
  cp -r "$SHIM_DIR/pyproject.toml" "$SHIM_DIR/sgl_kernel" "$shim_tmp/"
  find "$shim_tmp" -name __pycache__ -prune -exec rm -rf {} +
  "${PIP[@]}" --no-deps --force-reinstall "$shim_tmp"
  rm -rf "$shim_tmp"
fi

# Check: sglang imports on the CPU engine path.
SGLANG_USE_CPU_ENGINE=1 "$PYTHON" -c "import sglang, sgl_kernel, torch; print('[install_sglang_cpu] ok: sglang', sglang.__version__, '| torch', torch.__version__)"
log "done in $((SECONDS - t_start)) s"
