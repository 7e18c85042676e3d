# One image with the `shoal` binary; docker-compose.yml runs each role from it.
FROM rust:1.85-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p shoal-cli

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/shoal /usr/local/bin/shoal
ENV SHOAL_HOME=/var/lib/shoal
ENTRYPOINT ["shoal"]
