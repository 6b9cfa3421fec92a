# Multi-stage build: compile with the Rust toolchain, run on a slim Debian with only the binary.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src src
COPY migrations migrations
RUN cargo build --release --locked

FROM debian:bookworm-slim
# CA roots for an S3 store over HTTPS (STORAGE=s3).
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --home /app tenant-files && mkdir -p /data/uploads && chown tenant-files /data/uploads
COPY --from=build /src/target/release/tenant-files /usr/local/bin/tenant-files
USER tenant-files
ENV BIND=0.0.0.0:5000 UPLOAD_DIR=/data/uploads
EXPOSE 5000
ENTRYPOINT ["tenant-files"]
