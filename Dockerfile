# The site image: every scada-* binary and scadactl, on Debian 12.
#
#   docker build -t scada .               (docker-compose.yml builds it for you)
#
# Stage "build" has the compilers and -dev packages; the runtime stage has the
# runtime libraries only and runs as the unprivileged user "scada". Stage
# "redis" is the site's Redis server on the same base (no registry needed).
FROM debian:bookworm-slim AS build
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends \
      build-essential pkg-config protobuf-c-compiler \
      libczmq-dev libzmq3-dev libprotobuf-c-dev libmodbus-dev libhiredis-dev libyaml-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY proto proto
COPY common common
COPY services services
RUN make -j"$(nproc)" bins && strip build/bin/*

FROM debian:bookworm-slim AS redis
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data && chown redis:redis /data
USER redis
WORKDIR /data
VOLUME /data
CMD ["redis-server", "--dir", "/data", "--appendonly", "yes"]

FROM debian:bookworm-slim AS runtime
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends \
      libczmq4 libzmq5 libprotobuf-c1 libmodbus5 libhiredis0.14 libyaml-0-2 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --no-log-init --home-dir /var/lib/scada --shell /usr/sbin/nologin scada \
 && mkdir -p /var/lib/scada/iolog /var/lib/scada/alarm /var/lib/scada/audit /etc/scada \
 && chown -R scada:scada /var/lib/scada
COPY --from=build /src/build/bin/ /usr/local/bin/
USER scada
WORKDIR /var/lib/scada
# The site file is mounted here (read-only) by docker-compose.yml.
ENV SCADA_SITE=/etc/scada/site.yaml
CMD ["scadactl", "--help"]
