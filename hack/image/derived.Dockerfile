# A derived image with a third-party plugin, as docs/operations.md shows: the plugin's wheel
# installed into the image's virtualenv; `admission-host plugins` fails the build if it does not load.
ARG BASE=admission-host:0.1.0
FROM ${BASE}
USER root
COPY *.whl /tmp/
RUN pip install --no-cache-dir --only-binary=:all: /tmp/*.whl \
 && rm /tmp/*.whl \
 && admission-host plugins
USER 10001:10001
