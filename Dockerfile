# Container image of apigateway-exporter.
#
#   docker build -t apigateway-exporter .
#   docker build --build-arg VERSION=0.1.0 \
#     --build-arg REVISION="$(git rev-parse --short=12 HEAD)" -t apigateway-exporter:0.1.0 .
#
# The build stage runs the release build exactly as documented: `cargo build --release --locked`.
# The runtime stage is distroless (glibc, libgcc, CA certificates; no shell, no package
# manager), runs as the numeric non-root user 65532 and writes nothing to its filesystem, so
# it runs with a read-only root filesystem. tests/deploy.rs lints this file with hadolint and
# checks these properties.

# ---- build ---------------------------------------------------------------------------------
# Debian 12 (bookworm), the same glibc as the distroless debian12 runtime below: a binary
# built against a newer glibc would not start there.
FROM rust:1-bookworm AS build
WORKDIR /src

# Dependency layer: compile every dependency against stub sources, so that editing the
# exporter's own code does not recompile the dependency graph. Only Cargo.toml and Cargo.lock
# invalidate this layer. The stub's own build fingerprints are deleted so the real sources
# below are always rebuilt, whatever their timestamps.
# Cargo.toml declares the criterion benchmarks ([[bench]], harness = false), and cargo wants
# the file of every declared target to exist before it builds anything. The image needs no
# benchmark, so benches/ stays out of the context (.dockerignore) and these stubs stay for
# the real build below; `cargo build --release` never compiles them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/store.rs \
    && echo 'fn main() {}' > benches/render.rs \
    && echo 'fn main() {}' > benches/cycle.rs \
    && cargo build --release --locked \
    && rm -rf src target/release/.fingerprint/apigateway-exporter-*

COPY build.rs ./
COPY src ./src
# build.rs stamps the git revision into aws_apigateway_exporter_build_info; the build context
# carries no .git, so the revision comes in as a build argument.
ARG REVISION=unknown
RUN APIGW_EXPORTER_REVISION="${REVISION}" cargo build --release --locked

# ---- runtime -------------------------------------------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot

ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="apigateway-exporter" \
      org.opencontainers.image.description="Prometheus and OpenTelemetry exporter for Amazon API Gateway metrics from CloudWatch" \
      org.opencontainers.image.source="https://github.com/apigateway-exporter/apigateway-exporter" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

COPY --from=build /src/target/release/apigateway-exporter /usr/local/bin/apigateway-exporter

# No allocator variables here: the binary sets glibc's (MALLOC_ARENA_MAX=1,
# MALLOC_MMAP_THRESHOLD_=262144) itself, unless they are set (docs/performance.md, "The whole
# process"); -e MALLOC_ARENA_MAX=... overrides one.
# distroless's "nonroot" user, given by number so that Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
# The default --web.listen-address (0.0.0.0:9743): /metrics, /-/healthy, /-/ready, /.
EXPOSE 9743
ENTRYPOINT ["/usr/local/bin/apigateway-exporter"]
