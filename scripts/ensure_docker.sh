#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine: install docker.io (and debootstrap, which the
# offline base image needs) from Debian when missing, start dockerd detached when it is not
# running, and wait until `docker info` answers. Idempotent: a running daemon is left alone.
set -euo pipefail

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
  echo "==> installing docker.io and debootstrap (apt)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq docker.io debootstrap >/dev/null
fi

if docker info >/dev/null 2>&1; then
  exit 0
fi

echo "==> starting dockerd in the background (log: /tmp/onenode-dockerd.log)"
$SUDO setsid dockerd >/tmp/onenode-dockerd.log 2>&1 < /dev/null &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    echo "==> docker engine is up"
    exit 0
  fi
  sleep 1
done
echo "error: dockerd did not answer within 60s; see /tmp/onenode-dockerd.log" >&2
exit 1
