# syntax=docker/dockerfile:1
# admission-host: the host and its bundled plugins, with the pinned dependencies of requirements.txt.
#   docker build -t admission-host:0.1.0 .
# Third-party plugins: build a derived image (docs/operations.md).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# Build stage: a virtualenv with the dependencies (binary wheels only: no compiler anywhere) and
# the project itself.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/admission-host
WORKDIR /src
COPY requirements.txt ./
RUN /opt/admission-host/bin/pip install --only-binary=:all: -r requirements.txt
COPY setup.py README.md ./
COPY framework ./framework
COPY plugins ./plugins
# setuptools (9 MB) only builds packages: the image installs wheels, and nothing imports it.
RUN /opt/admission-host/bin/pip install --no-deps . \
 && /opt/admission-host/bin/pip uninstall --yes --quiet setuptools \
 && /opt/admission-host/bin/pip check

# Final stage: the slim base, the virtualenv, and an unprivileged user; nothing else.
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 admission-host \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin admission-host
COPY --from=build /opt/admission-host /opt/admission-host
ENV PATH=/opt/admission-host/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# The Deployment also runs it as 10001 with a read-only root filesystem.
USER 10001:10001
EXPOSE 8443
ENTRYPOINT ["admission-host"]
CMD ["--help"]
