# leadbridge container image.
#   docker build -t ghcr.io/leadbridge/leadbridge:0.1.0 .
#   docker run -p 8080:8080 ghcr.io/leadbridge/leadbridge:0.1.0
# The Helm chart (helm/leadbridge) mounts its own config.toml and mappings over
# the defaults copied here.

# ---- build ------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin leadbridge \
 && install -D -m 0755 target/release/leadbridge /out/leadbridge \
 && mkdir -p /out/state/data

# ---- runtime ----------------------------------------------------------------
# Distroless: glibc and libgcc, no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/leadbridge /usr/local/bin/leadbridge
COPY config/default.toml /etc/leadbridge/config/config.toml
COPY mappings/ /etc/leadbridge/mappings/
# The working directory holds the default configuration's SQLite store
# (sqlite://data/leadbridge.db, relative to it); relative mapping paths are
# found next to the config directory (/etc/leadbridge/mappings).
COPY --from=builder --chown=10001:10001 /out/state /var/lib/leadbridge
WORKDIR /var/lib/leadbridge
ENV LEADBRIDGE_CONFIG=/etc/leadbridge/config/config.toml
USER 10001:10001
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/leadbridge"]
CMD ["serve"]
