# A derived image with a third-party plugin, as docs/operations.md shows: the plugin's wheel
# installed into the image's virtualenv; `admission-host plugins --check` fails the build if it does
# not load or declares itself wrongly (it needs no options: the image has none).
ARG BASE=admission-host:0.1.0
FROM ${BASE}
USER root
COPY *.whl /tmp/
RUN pip install --no-cache-dir --only-binary=:all: /tmp/*.whl \
 && rm /tmp/*.whl \
 && admission-host plugins --check --plugins env_injector
USER 10001:10001
