#!/usr/bin/env bash
# Install (Debian's clickhouse-server) and start a ClickHouse server on 127.0.0.1:9000.
set -euo pipefail

answers() { clickhouse-client --host 127.0.0.1 --query "SELECT 1" >/dev/null 2>&1; }

if answers; then exit 0; fi
if ! command -v clickhouse-server >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clickhouse-server clickhouse-client >/dev/null
fi
if ! answers; then
    (service clickhouse-server start || true) >/dev/null 2>&1
fi
for _ in $(seq 1 30); do answers && break; sleep 1; done
if ! answers; then
    # No init system: run the server directly, as its own user, in the background.
    mkdir -p /var/lib/clickhouse /var/log/clickhouse-server
    chown -R clickhouse: /var/lib/clickhouse /var/log/clickhouse-server 2>/dev/null || true
    runuser -u clickhouse -- clickhouse-server --daemon --config-file=/etc/clickhouse-server/config.xml \
        || clickhouse-server --daemon --config-file=/etc/clickhouse-server/config.xml
    for _ in $(seq 1 30); do answers && break; sleep 1; done
fi
answers || { echo "ClickHouse did not start; see /var/log/clickhouse-server/" >&2; exit 1; }
echo "ClickHouse $(clickhouse-client --host 127.0.0.1 --query 'SELECT version()') on 127.0.0.1:9000"
