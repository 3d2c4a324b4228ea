# Sourced by scripts/gpu_*.sh from the repo root on the GPU host: SGLang 0.5.17 from the carried
# wheelhouse (.gpu/wh/carry, docs/tests.md) and this package into $SITE (default /tmp/site, kept by a
# warm host, so a second call only reinstalls the package), on PYTHONPATH.
SITE=${SITE:-/tmp/site}
if [ ! -d "$SITE/sglang" ]; then
  bash .gpu/install_wheelhouse.sh .gpu/wh/carry "$SITE"
fi
export PYTHONPATH=$SITE PYTHONUNBUFFERED=1
pip install --quiet --no-deps --no-build-isolation --upgrade --target "$SITE" . 2>&1 | grep -v "WARNING" || true
