# syntax=docker/dockerfile:1
# The nodejs-leak-exporter image, as the Helm chart (helm/nodejs-leak-exporter) runs it.
#
#   docker build -t nodejs-leak-exporter:0.1.0 .
#
# The tag is the chart's appVersion (helm/nodejs-leak-exporter/Chart.yaml), which is the crate's
# version (Cargo.toml): the chart's image.tag defaults to it, and image.repository to
# nodejs-leak-exporter. No public registry is assumed; make the image available to the cluster:
#
#   kind load docker-image nodejs-leak-exporter:0.1.0                # a kind cluster
#   docker tag nodejs-leak-exporter:0.1.0 REGISTRY/nodejs-leak-exporter:0.1.0 \
#     && docker push REGISTRY/nodejs-leak-exporter:0.1.0             # then --set image.repository=REGISTRY/nodejs-leak-exporter
#
# The image runs as nobody (65534) with no capabilities: enough to watch one user's processes (the
# sidecar mode runs it as the app's uid). The chart's DaemonSet runs it as uid 0 with exactly the
# capabilities it needs (see the chart's README).

FROM rust:1.95-bookworm AS build
WORKDIR /src
# The whole crate (see .dockerignore): Cargo.toml declares test and bench targets whose files must
# exist for the manifest to load.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin nodejs-leak-exporter \
    && cp target/release/nodejs-leak-exporter /usr/local/bin/nodejs-leak-exporter

# glibc and libgcc of Debian 12, as the build stage links against; no shell, no package manager.
FROM gcr.io/distroless/cc-debian12
COPY --from=build /usr/local/bin/nodejs-leak-exporter /usr/bin/nodejs-leak-exporter
USER 65534:65534
EXPOSE 19229
ENTRYPOINT ["/usr/bin/nodejs-leak-exporter"]
