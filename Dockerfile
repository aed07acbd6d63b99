# The coupon service image: a virtualenv built in one stage, copied into a clean slim base.
# One pinned base for both stages (the Python the tests run on: 3.11).
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml requirements.lock README.md ./
COPY orchestrator orchestrator
COPY services services
COPY sagas sagas
# The lock pins every package that gets installed: the same tree the tests ran on.
RUN /opt/venv/bin/pip install -c requirements.lock .

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 coupon \
    && useradd --system --uid 10001 --gid coupon --no-create-home coupon
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8080 \
    WORKERS=0
USER 10001:10001
EXPOSE 8080
# Asks the port the service listens on: PORT may be changed at run time.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; url = 'http://127.0.0.1:' + os.environ['PORT'] + '/health'; sys.exit(urllib.request.urlopen(url, timeout=2).status != 200)"]
CMD ["coupon-service"]
