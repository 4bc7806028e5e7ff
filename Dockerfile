# The outrigger sidecar image: `docker build -t outrigger:dev .` (see deploy/README.md).
#
# Stage 1 builds the release binary on the official Rust image (Debian 12 "bookworm", which
# already has gcc, make, pkg-config and libssl-dev for the bundled librdkafka; protoc is
# vendored by build.rs). zlib is linked statically (`rdkafka/libz-static`) because the
# distroless debian12 runtime has no libz.so.1; OpenSSL stays dynamic (libssl.so.3 and
# libcrypto.so.3 ship in distroless/cc-debian12, the same Debian 12 OpenSSL 3.0 as here).
ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin outrigger --features rdkafka/libz-static \
 && cp target/release/outrigger /outrigger

# Stage 2: glibc, libgcc_s, libssl3, CA certificates and tzdata; no shell, no package manager.
# The :nonroot tag runs as uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /outrigger /outrigger
USER 65532:65532
# 3500: HTTP API (/v1.0/bindings, /v1.0/healthz); 50001: gRPC API (dapr.proto.runtime.v1.Dapr).
EXPOSE 3500 50001
ENTRYPOINT ["/outrigger", "sidecar"]
# For a plain `docker run`: listen on the container's interfaces. In Kubernetes the injector
# gives the sidecar its own command and arguments (APIs on loopback, health on 3501), and the
# injector's Deployment runs `/outrigger injector`; neither uses this line.
CMD ["--dapr-listen-addresses", "0.0.0.0"]
