#!/usr/bin/env bash
# Installs the Debian packages hookline's build and tests need, when they are missing:
# cmake + libcurl headers (bundled librdkafka), clang/libclang (RocksDB bindings), pkg-config + OpenSSL
# headers (TLS to Kafka), prometheus (promtool for rule tests), wrk (load), curl and openssl (make run's demo),
# docker-compose (validates deploy/compose offline; no Docker engine is used), haproxy (the load balancer of
# the highly available topology test).
set -euo pipefail
packages=(build-essential cmake pkg-config libssl-dev libcurl4-openssl-dev clang libclang-dev zlib1g-dev
          curl openssl python3 prometheus wrk docker-compose haproxy)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing system packages: ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
