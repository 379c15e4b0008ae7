# syntax=docker/dockerfile:1
# The appinfra operator image. Two stages: the builder turns the project and its locked
# dependencies (uv.lock, hash-checked) into wheels; the final stage installs only those
# wheels from a bind mount, offline, and runs as a numeric non-root user.
# Build: docker build -t appinfra:0.1.0 .
# The same steps are exercised without Docker by tests/unit/test_wheel_install.py.

FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
# Dependencies first (their own layer, reused while uv.lock is unchanged): exactly the
# locked versions, every download checked against the lock's hashes, binary wheels only
# (the slim image has no compiler, and none is needed).
RUN uv export --frozen --no-dev --no-emit-project --format requirements-txt -o requirements.txt \
 && pip wheel --no-cache-dir --require-hashes --only-binary=:all: -r requirements.txt -w /wheels
COPY operator ./operator
RUN pip wheel --no-cache-dir --no-deps . -w /wheels

FROM python:3.11-slim
LABEL org.opencontainers.image.title="appinfra" \
      org.opencontainers.image.description="Kubernetes operator: config, secrets, health and rate limits" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# Only the wheels built above, offline; the bind mount keeps them out of the image layers.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/appinfra-*.whl
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080 8081
ENTRYPOINT ["appinfra"]
CMD ["run"]
