#!/usr/bin/env bash
# CI: the README's Quickstart line, run verbatim as a new user runs it, must serve a chat completion.
#
# A copy of the repository's tracked files (a fresh checkout), a fresh venv (python -m venv: no
# packages and no pins from the test install, so pip resolves the newest releases it is allowed),
# an empty demo-model cache (the build runs), the line in the background; then GET /health, one
# chat completion with a non-empty answer, SIGTERM, and the line's own exit status must be 0.
# Every part's duration is printed. Needs the package index (the CI machine has it).
#
#   bash scripts/ci_quickstart.sh            # env: QUICKSTART_TIMEOUT_S (default 900: install + build + load)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
TIMEOUT_S=${QUICKSTART_TIMEOUT_S:-900}
PYTHON=${PYTHON:-python3}

log() { printf '[quickstart] %s\n' "$*"; }
die() {
  log "FAILED: $*"
  [ -f "${LOG:-}" ] && { log "last lines of its output:"; tail -n 40 "$LOG" | sed 's/^/    /'; }
  grep -q "No space left on device" "${LOG:-/dev/null}" 2>/dev/null && log "the disk is full: $(df -Pm "${WORK:-/tmp}" | awk 'NR == 2 {print $4}') MB free"
  exit 1
}
secs() { echo $(( $(date +%s) - $1 )); }
# The `orthrus serve` process of the line: a child of its shell, or the shell itself if bash exec'd it.
find_server() {
  if ps -o args= -p "$pid" 2>/dev/null | grep -q "bin/orthrus serve"; then echo "$pid"; else pgrep -P "$pid" -f "bin/orthrus serve" || true; fi
}

cmd=$(awk '/<!-- quickstart-command -->/{found=1; next} found && /^```/{if (inblock) exit; inblock=1; next} inblock{print}' "$REPO/README.md")
[ -n "$cmd" ] || die "no command found in README.md after <!-- quickstart-command -->"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/orthrus-quickstart.XXXXXX")
LOG=$WORK/quickstart.log
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    for child in $(pgrep -P "$pid" || true); do kill -KILL "$child" 2>/dev/null || true; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  local t=$(date +%s)
  rm -rf "$WORK"
  log "removed $WORK in $(secs "$t") s"
}
trap cleanup EXIT

t0=$(date +%s)
mkdir "$WORK/repo"
git -C "$REPO" ls-files -z | (cd "$REPO" && xargs -0 tar -cf - --no-recursion) | tar -xf - -C "$WORK/repo"
"$PYTHON" -m venv "$WORK/venv"
port=$("$WORK/venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log "fresh copy + venv in $WORK ($(secs "$t0") s); port $port (ORTHRUS_PORT), empty ORTHRUS_CACHE_DIR"
# The install is ~6 GB (torch's CUDA build); a full disk fails it with an OSError deep in pip's output.
free_mb=$(df -Pm "$WORK" | awk 'NR == 2 {print $4}')
log "free disk at $WORK: ${free_mb} MB (the install needs about 6,500 MB)"
log "+ $cmd"

# As a user's shell would run it: the venv active, nothing of the developer's Python setup.
t_start=$(date +%s)
(
  cd "$WORK/repo"
  unset PYTHONPATH PYTHONHOME PIP_CONSTRAINT PIP_REQUIRE_VIRTUALENV
  export VIRTUAL_ENV="$WORK/venv" PATH="$WORK/venv/bin:$PATH" PIP_DISABLE_PIP_VERSION_CHECK=1
  export ORTHRUS_CACHE_DIR="$WORK/cache" ORTHRUS_PORT="$port"
  exec bash -c "$cmd"
) >"$LOG" 2>&1 </dev/null &
pid=$!

# Phase 1: the installs, until `orthrus serve` runs. Phase 2: build + load, until /health is 200.
server=""
t_serve=""
until curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1; do
  kill -0 "$pid" 2>/dev/null || { wait "$pid" && rc=0 || rc=$?; die "the line exited ($rc) before /health answered"; }
  if [ -z "$server" ]; then
    server=$(find_server)
    [ -n "$server" ] && { t_serve=$(date +%s); log "pip installs done in $((t_serve - t_start)) s; orthrus serve is pid $server"; }
  fi
  [ "$(secs "$t_start")" -lt "$TIMEOUT_S" ] || die "no /health after ${TIMEOUT_S} s"
  sleep 2
done
[ -n "$server" ] || server=$(find_server)
log "/health is 200 after $(secs "$t_start") s (demo build + load: $(secs "${t_serve:-$t_start}") s)"
"$WORK/venv/bin/pip" list 2>/dev/null | grep -iE '^(torch|transformers|gguf|tokenizers|fastapi|uvicorn) ' | sed 's/^/    /' || true

t_req=$(date +%s)
answer=$(curl -sf "http://127.0.0.1:$port/v1/chat/completions" -H "Content-Type: application/json" \
  -d '{"messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 32}') \
  || die "the chat completion request failed"
text=$(printf '%s' "$answer" | "$WORK/venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["choices"][0]["message"]["content"].strip())') \
  || die "unexpected chat completion response: $answer"
[ -n "$text" ] || die "empty answer: $answer"
log "chat completion in $(secs "$t_req") s: $text"

[ -n "$server" ] || die "cannot find the orthrus serve process"
t_stop=$(date +%s)
kill -TERM "$server"
if wait "$pid"; then rc=0; else rc=$?; fi
pid=""
[ "$rc" -eq 0 ] || die "the line exited $rc after SIGTERM (expected 0: graceful shutdown)"
log "SIGTERM: exited 0 in $(secs "$t_stop") s"
log "passed in $(secs "$t0") s"
