# syntax=docker/dockerfile:1
#
# The streamer image: one static binary on distroless, running as a non-root
# user. Every subcommand runs from it (the image's ENTRYPOINT is the binary):
#
#   docker run --rm streamer:dev serve --help
#
# Ports the subcommands listen on by default (nothing is published unless you
# say so; docker-compose.yml shows a whole deployment):
#   7070  serve:   gRPC (Streamer service for gateways, Ingest for producers)
#   7071  serve:   admin HTTP (/metrics, /healthz, /readyz)
#   7072  puller:  admin HTTP (/metrics, /healthz, /readyz)
#   8080  gateway: WebSocket /v1/ws, SSE /v1/sse, demo page at /
#   8081  gateway: admin HTTP (/metrics, /healthz, /readyz)
#
# The image has no shell and no curl: its HEALTHCHECK is "streamer
# healthcheck", which asks a node's /readyz; a container running the gateway
# or the puller overrides it with --url (docker-compose.yml does). Kubernetes
# probes the admin ports itself and ignores HEALTHCHECK.
#
# Build with --build-arg VERSION=$(git describe --tags --always) to name the
# version that "streamer version" and the streamer_build_info metric report.

# --- build: a static binary, built on the builder's own platform and
#     cross-compiled for the target one (docker buildx --platform …).
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=devel

# Modules first, so that editing the code does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X github.com/streamerd/streamer/internal/buildinfo.Version=${VERSION}" -o /out/streamer ./cmd/streamer

# --- runtime: distroless/static has CA certificates, tzdata and an
#     /etc/passwd with the nonroot user (65532), and nothing else.
FROM gcr.io/distroless/static-debian12:nonroot AS runtime
COPY --from=build /out/streamer /streamer
USER 65532:65532
EXPOSE 7070 7071 7072 8080 8081
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/streamer", "healthcheck", "--url", "http://127.0.0.1:7071/readyz"]
ENTRYPOINT ["/streamer"]
CMD ["serve"]
