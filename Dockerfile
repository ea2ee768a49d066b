# syntax=docker/dockerfile:1
# A static musl binary on an empty base: the binary, CA certificates, a non-root user.
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/ecr-secret-refresher:0.1.0 .
# Without a Docker engine, scripts/image assembles the same final stage with buildah.

# Built natively per platform (buildx emulates the other one), so no cross linker is needed.
FROM rust:1.95-alpine AS build
ARG TARGETARCH
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY src src
COPY tests/fake-kube tests/fake-kube
RUN case "$TARGETARCH" in \
      amd64) target=x86_64-unknown-linux-musl ;; \
      arm64) target=aarch64-unknown-linux-musl ;; \
      *) echo "unsupported TARGETARCH '$TARGETARCH': use amd64 or arm64" >&2; exit 1 ;; \
    esac \
 && rustup target add "$target" \
 && cargo build --release --locked --target "$target" --bin ecr-secret-refresher \
 && cp "target/$target/release/ecr-secret-refresher" /ecr-secret-refresher

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /ecr-secret-refresher /ecr-secret-refresher
USER 65532:65532
# checkov:skip=CKV_DOCKER_2: a run-once CronJob container exits when done; there is no service to health-check
ENTRYPOINT ["/ecr-secret-refresher"]
