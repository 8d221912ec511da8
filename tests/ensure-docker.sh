#!/usr/bin/env bash
# Make sure a Docker engine answers. On a fresh Debian machine run as root,
# install Debian's docker.io and start dockerd in the background (logging to
# /var/log/agent-sandbox-dockerd.log); anywhere else, say what is missing.
set -euo pipefail
if docker info >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != 0 ] || [ ! -r /etc/debian_version ]; then
  echo "docker: no Docker engine answers; start one (or run as root on Debian to have it installed)" >&2
  exit 1
fi
if ! command -v dockerd >/dev/null 2>&1; then
  echo "docker: installing Debian's docker.io"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
if ! pgrep -x dockerd >/dev/null; then
  echo "docker: starting dockerd (log: /var/log/agent-sandbox-dockerd.log)"
  nohup dockerd >/var/log/agent-sandbox-dockerd.log 2>&1 &
fi
for _ in $(seq 60); do
  if docker info >/dev/null 2>&1; then exit 0; fi
  sleep 1
done
echo "docker: dockerd did not answer within 60 s; see /var/log/agent-sandbox-dockerd.log" >&2
exit 1
