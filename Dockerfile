# hookline's image: hookline-ingress, hookline-processor and the hookline CLI in one image, the binary chosen by
# the command (`docker run IMAGE hookline-processor`; the default is the ingress). The example configs are in
# /etc/hookline; mount your own there, and override fields with HOOKLINE_* variables (README, Configuration).
#
#   docker build -t hookline .
#   make image        # buildah, without a Docker engine (scripts/image.sh), then each binary run inside it

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM docker.io/library/rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
# cmake and libcurl for the bundled librdkafka, clang for RocksDB's bindings, OpenSSL for TLS to Kafka.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake clang libclang-dev libcurl4-openssl-dev libssl-dev \
      pkg-config zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Debug info is stripped (RocksDB's alone is 400 MB); symbols stay, so a panic's backtrace names functions.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p hookline-ingress -p hookline-processor -p hookline-cli \
 && mkdir /out \
 && cp target/release/hookline-ingress target/release/hookline-processor target/release/hookline /out/ \
 && strip --strip-debug /out/*

FROM docker.io/library/debian:${DEBIAN_RELEASE}-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin hookline \
 && mkdir -p /etc/hookline /var/lib/hookline/data \
 && chown -R hookline:hookline /var/lib/hookline
COPY --from=build /out/ /usr/local/bin/
COPY deploy/ingress.example.toml /etc/hookline/ingress.toml
COPY deploy/processor.example.toml /etc/hookline/processor.toml
# The example configs listen on loopback: in a container, set HOOKLINE_SERVER__LISTEN (and, for the ingress,
# HOOKLINE_SERVER__ADMIN_LISTEN) to 0.0.0.0 addresses, per service (deploy/compose does). The processor's state
# folder (state.dir, ./data/processor) is under /var/lib/hookline: give it a volume.
ENV HOOKLINE_INGRESS_CONFIG=/etc/hookline/ingress.toml \
    HOOKLINE_PROCESSOR_CONFIG=/etc/hookline/processor.toml \
    HOOKLINE_LOG_FORMAT=json
USER 10001:10001
WORKDIR /var/lib/hookline
EXPOSE 8080 9190 9091
STOPSIGNAL SIGTERM
CMD ["hookline-ingress"]
