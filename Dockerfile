# secondfactord (the server) and secondfactor (the admin CLI) in one image.
#
#   docker build -t secondfactor .
#   docker run -v sf-data:/data -p 7070:7070 -p 7080:7080 \
#     -e SECONDFACTOR_TLS_CERT=/data/tls.crt -e SECONDFACTOR_TLS_KEY=/data/tls.key \
#     -e SECONDFACTOR_SEAL_KEY_FILE=/data/seal.keys \
#     -e SECONDFACTOR_CALLERS=portal:portal:<sha256hex>,ops:admin:<sha256hex> \
#     secondfactor
#
# In a container the server listens on :7070 and :7080, not on loopback, so it
# refuses to start without TLS (SECONDFACTOR_TLS_CERT and SECONDFACTOR_TLS_KEY)
# and without seal keys for the TOTP secrets at rest (SECONDFACTOR_SEAL_KEYS,
# or SECONDFACTOR_SEAL_KEY_FILE). It writes no local token either: make caller
# tokens with `secondfactor token new` and list their hashes in
# SECONDFACTOR_CALLERS. The CLI, for example through `docker exec`, then needs
# SECONDFACTOR_TOKEN and TLS (-ca, and -tls-server-name when the certificate
# does not name the address it dials).

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/ ./cmd/secondfactord ./cmd/secondfactor
# The final image has no shell: make the data folder here, for COPY --chown.
RUN mkdir -p /rootfs/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/secondfactord /out/secondfactor /usr/local/bin/
# The embedded store (one bbolt file) lives here. Owned by nonroot (65532) in
# the image, so that a new named volume starts writable by the server.
COPY --from=build --chown=65532:65532 /rootfs/ /
VOLUME /data
WORKDIR /data
ENV SECONDFACTOR_DATA_DIR=/data SECONDFACTOR_GRPC_ADDR=:7070 SECONDFACTOR_HTTP_ADDR=:7080
# 7070: gRPC (portal backend, admin CLI); 7080: HTTP (web pages, /healthz, /metrics).
EXPOSE 7070 7080
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/secondfactord"]
