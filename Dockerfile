# llm-gateway serve, for any container platform. The store (SQLite) and stored task images live on
# the volume /data; provider credentials come from the environment (docs/configuration.md).
#   docker build -t llm-gateway .
#   docker run -p 8000:8000 -v llm-gateway-data:/data -e OPENAI_API_KEY llm-gateway
# The first start prints the admin key once (a JSON line on stdout: `docker logs`). Operator commands
# run in the same container: docker exec <container> llm-gateway users list
FROM python:3.13-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GATEWAY_STORE_URL=sqlite:////data/gateway.db \
    GATEWAY_FILES_URL=/data/files

WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY layers/gateway ./layers/gateway
# the package with its fast server path (uvloop, httptools, the aiohttp pool); tokenizer files ship inside
RUN pip install --no-cache-dir "./[speed]" \
    && useradd --create-home --uid 10001 gateway \
    && mkdir -p /data \
    && chown gateway /data

USER 10001
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["llm-gateway"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
