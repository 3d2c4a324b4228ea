# GPU serving: SGLang 0.5.17 with the ORTHRUS speculative algorithm, and the orthrus gateway in front.
#
#   docker build -t orthrus-sglang .
#   docker run --gpus all -p 8000:8000 -e ORTHRUS_MODEL=chiennv/Orthrus-Qwen3-8B orthrus-sglang
#
# Ports: 8000 = the gateway (OpenAI API, /generate, /metrics, live page at /), public;
#        30000 = SGLang itself, bound to 127.0.0.1 inside the container.
# Environment:
#   ORTHRUS_MODEL        checkpoint dir or hub id (mount a volume for a local dir)
#   SGLANG_ARGS          extra `sglang.launch_server` flags, e.g. "--speculative-num-draft-tokens 16 --tp 2"
#   ORTHRUS_API_KEY      if set, the gateway requires `Authorization: Bearer <key>`
#   ORTHRUS_MAX_CONCURRENT_REQUESTS, ORTHRUS_MAX_QUEUE, ORTHRUS_MAX_BODY_BYTES: gateway limits
#   HF_TOKEN             for gated hub models
# The gateway answers 503 on /health until SGLang has loaded the model (a cold start with CUDA
# graphs takes minutes), then 200. This image is written for, not yet built on, a GPU host:
# nothing here has run `docker build` (no Docker engine on the CI machines).
ARG SGLANG_IMAGE=lmsysorg/sglang:v0.5.17
FROM ${SGLANG_IMAGE}

WORKDIR /opt/orthrus
COPY pyproject.toml README.md ./
COPY orthrus_sglang ./orthrus_sglang
COPY server ./server
# --no-deps: keep the image's own torch/sglang/transformers; then the gateway's few extras.
RUN pip install --no-cache-dir --no-deps . \
 && pip install --no-cache-dir "fastapi>=0.110" "uvicorn[standard]>=0.29" "prometheus-client>=0.20" \
        "pydantic-settings>=2.2" "httpx>=0.27"

ENV ORTHRUS_MODEL=chiennv/Orthrus-Qwen3-8B \
    ORTHRUS_BACKEND=sglang \
    ORTHRUS_BACKEND_URL=http://127.0.0.1:30000 \
    ORTHRUS_HOST=0.0.0.0 \
    ORTHRUS_PORT=8000 \
    SGLANG_ARGS=""
EXPOSE 8000

# The plugin registers through the `sglang.srt.plugins` entry point: installing the package is enough.
CMD ["bash", "-c", "python -m sglang.launch_server --model-path \"$ORTHRUS_MODEL\" --host 127.0.0.1 --port 30000 --speculative-algorithm ORTHRUS --attention-backend triton --enable-metrics $SGLANG_ARGS & python -m orthrus_server --model \"$ORTHRUS_MODEL\" & wait -n; kill 0"]
