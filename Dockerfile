# mailgate: multi-stage build of a static binary into a minimal, non-root image.
# The build stage runs scripts/build.sh, the same script CI runs.
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG MAILGATE_VERSION=dev
RUN MAILGATE_VERSION=$MAILGATE_VERSION ./scripts/build.sh /out/mailgate && mkdir -p /out/state

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/mailgate /usr/local/bin/mailgate
# The app-password store's default place (app_passwords.database, SQLite),
# writable by the non-root user; mount a volume on it to keep it.
COPY --from=build --chown=nonroot:nonroot /out/state /var/lib/mailgate
VOLUME ["/var/lib/mailgate"]
# Ports below 1024 need no capability in Docker >= 20.10 (ip_unprivileged_port_start=0);
# 8443 is the app-password page (app_passwords.listen).
EXPOSE 993 143 465 587 995 110 4190 9090 8443
USER nonroot:nonroot
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s CMD ["/usr/local/bin/mailgate", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/mailgate"]
CMD ["serve"]
