# syntax=docker/dockerfile:1
# Images of the tulle components, for users with Docker (or any BuildKit builder). One multi-stage
# file, one target per component; binaries at /usr/local/bin/tulle-<component>, entrypoint the binary.
#
#   docker build --target proxy      -t localhost/tulle/proxy:0.1.0 .
#   docker build --target identity   -t localhost/tulle/identity:0.1.0 .
#   docker build --target controller -t localhost/tulle/controller:0.1.0 .
#   docker build --target dashboard  -t localhost/tulle/dashboard:0.1.0 .
#   docker build --target cli        -t localhost/tulle/cli:0.1.0 .
#
# (The local test cluster does not use this file: cluster/image packs host-built binaries.)

ARG RUST_VERSION=1.95
ARG DEBIAN=bookworm

# ---- build every binary once ----
FROM rust:${RUST_VERSION}-${DEBIAN} AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
      -p tulle-proxy -p tulle-identity -p tulle-controller -p tulle-dashboard -p tulle-cli \
 && mkdir -p /out \
 && cp target/release/tulle-proxy target/release/tulle-identity \
       target/release/tulle-controller target/release/tulle-dashboard target/release/tulle /out/

# ---- proxy: needs iptables for `tulle-proxy init` (nft and legacy backends) ----
FROM debian:${DEBIAN}-slim AS proxy
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/tulle-proxy /usr/local/bin/tulle-proxy
# The sidecar runs as 2110 (set by the injector); `init` runs as root with NET_ADMIN/NET_RAW.
USER 2110:2110
ENTRYPOINT ["/usr/local/bin/tulle-proxy"]

# ---- identity and controller: glibc only, non-root ----
FROM gcr.io/distroless/cc-debian12:nonroot AS identity
COPY --from=build /out/tulle-identity /usr/local/bin/tulle-identity
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/tulle-identity"]

FROM gcr.io/distroless/cc-debian12:nonroot AS controller
COPY --from=build /out/tulle-controller /usr/local/bin/tulle-controller
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/tulle-controller"]

# The dashboard: templates and assets are compiled into the binary.
FROM gcr.io/distroless/cc-debian12:nonroot AS dashboard
COPY --from=build /out/tulle-dashboard /usr/local/bin/tulle-dashboard
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/tulle-dashboard"]

FROM gcr.io/distroless/cc-debian12:nonroot AS cli
COPY --from=build /out/tulle /usr/local/bin/tulle
ENTRYPOINT ["/usr/local/bin/tulle"]
