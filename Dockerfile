# syntax=docker/dockerfile:1
# leadbridge container image.
#
#   docker build -t registry.example.com/leadbridge:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
#   docker push registry.example.com/leadbridge:0.1.0
#   docker run -p 8080:8080 registry.example.com/leadbridge:0.1.0
#
# The final image is nothing but the filesystem .ci/image-rootfs assembles:
# the release binary, the shared libraries it loads, /bin/sleep (the chart's
# pre-stop pause), the CA bundle, passwd/group with the user leadbridge
# (10001), the default configuration and mappings. CI runs the same script
# on the release build and runs every chart scenario in it
# (helm/tests/test_image.py). The Helm chart mounts its own config.toml,
# mappings and secrets over the defaults.

# ---- build ------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# BuildKit cache mounts keep the crates.io downloads and the compiled
# dependencies between builds: a source change recompiles leadbridge only.
# (The target directory lives in the cache, so the binary is copied out in
# the same step.) [profile.release]: LTO, one codegen unit, stripped.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin leadbridge \
 && install -D -m 0755 target/release/leadbridge /out/leadbridge
RUN .ci/image-rootfs /rootfs /out/leadbridge

# ---- runtime ----------------------------------------------------------------
FROM scratch
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="leadbridge" \
      org.opencontainers.image.description="Microsoft commercial-marketplace leads into Dynamics 365 (Dataverse), durably." \
      org.opencontainers.image.source="https://github.com/leadbridge/leadbridge" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT"
COPY --from=builder /rootfs/ /
# COPY gives every file to root: the state directory again, owned by 10001.
COPY --from=builder --chown=10001:10001 /rootfs/var/lib/leadbridge /var/lib/leadbridge
# The working directory holds the default configuration's SQLite store
# (sqlite://data/leadbridge.db, relative to it); relative mapping paths are
# found next to the config directory (/etc/leadbridge/mappings).
WORKDIR /var/lib/leadbridge
ENV PATH=/usr/local/bin:/bin \
    LEADBRIDGE_CONFIG=/etc/leadbridge/config/config.toml
USER 10001:10001
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/leadbridge"]
CMD ["serve"]
