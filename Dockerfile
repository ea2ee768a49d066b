# syntax=docker/dockerfile:1
# A static musl binary on an empty base: the binary, CA certificates, a non-root user.
#   docker buildx build --platform linux/amd64,linux/arm64 --build-arg VERSION=0.1.0 \
#     --build-arg REVISION="$(git rev-parse HEAD)" --build-arg SOURCE=https://github.com/OWNER/ecr-secret-refresher \
#     -t REGISTRY/ecr-secret-refresher:0.1.0 --push .
# Without a Docker engine, scripts/image makes the same index (both platforms, same final stage,
# same labels) with buildah; docs/building.md has both ways. Keep the two in step.

# The build stage runs on the builder's own platform and cross-compiles for the target one with
# scripts/release (what scripts/image runs too): no emulated compiler, and one way to build.
FROM --platform=$BUILDPLATFORM rust:1.95-slim-bookworm AS build
ARG TARGETARCH
# The image's labels, as scripts/image sets them; refused when missing or not Cargo.toml's version.
ARG VERSION
ARG REVISION
ARG SOURCE
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY src src
COPY tests/fake-kube tests/fake-kube
COPY scripts/release scripts/release
# scripts/release installs musl-tools or gcc-aarch64-linux-gnu and the rustup target it needs,
# refuses an architecture other than amd64 and arm64, and checks the result is static.
RUN grep -qx "version = \"$VERSION\"" Cargo.toml && [ -n "$REVISION" ] && [ -n "$SOURCE" ] \
 || { echo "pass --build-arg VERSION=<Cargo.toml's version> REVISION=<git rev-parse HEAD> SOURCE=<repository URL>" >&2; exit 1; }
RUN cp "$(scripts/release "$TARGETARCH")" /ecr-secret-refresher

FROM scratch
ARG VERSION
ARG REVISION
ARG SOURCE
LABEL org.opencontainers.image.title=ecr-secret-refresher \
      org.opencontainers.image.version=$VERSION \
      org.opencontainers.image.revision=$REVISION \
      org.opencontainers.image.source=$SOURCE
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /ecr-secret-refresher /ecr-secret-refresher
USER 65532:65532
# checkov:skip=CKV_DOCKER_2: a run-once CronJob container exits when done; there is no service to health-check
ENTRYPOINT ["/ecr-secret-refresher"]
