# syntax=docker/dockerfile:1
# Build: docker build --build-arg VERSION=$(git describe --always) -t mqtt-authproxy .
FROM golang:1.26 AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# -tags nodemo leaves the demo's embedded Redis (with its Lua interpreter)
# and broker out of the image; the demo runs from the source tree.
RUN CGO_ENABLED=0 go build -trimpath -tags nodemo -ldflags "-s -w -X main.version=${VERSION}" -o /out/mqtt-authproxy ./cmd/mqtt-authproxy

# Static binary on distroless: CA certificates, no shell, non-root (65532).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/mqtt-authproxy /mqtt-authproxy
USER 65532:65532
# METRICS_LISTEN defaults to loopback only; in a container the published
# port (and HEALTHCHECK's healthcheck subcommand) need it on every interface.
ENV AUTHPROXY_LISTEN=:8883 \
    AUTHPROXY_METRICS_LISTEN=:9090 \
    AUTHPROXY_LOG_FORMAT=json
EXPOSE 8883 9090
VOLUME ["/certs"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["/mqtt-authproxy", "healthcheck"]
ENTRYPOINT ["/mqtt-authproxy"]
CMD ["serve"]
