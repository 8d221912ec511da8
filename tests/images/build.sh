#!/usr/bin/env bash
# Build the Molecule base images without a registry:
#   debootstrap (minbase) -> docker import -> a layer with systemd as PID 1,
#   python3, sudo and the host's extra CA certificates trusted.
# The Debian mirror is read from this machine's own apt sources; no mirror
# host is written in the repository. Each image is labelled with a hash of
# its build inputs, so a rebuild with the same inputs is skipped in seconds.
#
# Usage: tests/images/build.sh [SUITE...]   (default: bookworm trixie)
# On a host whose apt sources name no Debian archive, set AGENT_SANDBOX_DEBIAN_MIRROR.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo="${AGENT_SANDBOX_IMAGE_REPO:-agent-sandbox-molecule}"
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(bookworm trixie)

# What every test container needs to be managed by Ansible and to act as a
# real workstation's clients in the verifiers: curl, git, python with pip and
# requests, and node, whose trust in the proxy's CA the doctor checks as the agent.
# npm is left out: it brings about 350 more packages (some 100 MiB) to the image.
packages=(systemd systemd-sysv dbus python3 python3-apt sudo ca-certificates
  iproute2 procps curl git less netcat-openbsd iputils-ping
  python3-pip python3-requests nodejs)

die() { echo "images: $*" >&2; exit 1; }

# The first plain Debian archive URI in the machine's apt sources (deb822 or
# one-line format), skipping security and third-party archives.
debian_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    case "$f" in
      *.sources) awk '/^URIs:/ {for (i = 2; i <= NF; i++) print $i}' "$f" ;;
      *) awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; break}}' "$f" ;;
    esac
  done | grep -E '/debian/?$' | grep -v -- '-security' | head -n 1
}

if ! command -v debootstrap >/dev/null; then
  [ "$(id -u)" = 0 ] && [ -r /etc/debian_version ] || die "debootstrap is missing (apt-get install debootstrap)"
  echo "images: installing Debian's debootstrap"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi
docker info >/dev/null 2>&1 || die "no Docker engine answers (docker info failed)"
# AGENT_SANDBOX_DEBIAN_MIRROR overrides (e.g. on a non-Debian CI runner).
mirror=${AGENT_SANDBOX_DEBIAN_MIRROR:-$(debian_mirror)}
[ -n "$mirror" ] || die "no Debian archive found in /etc/apt/sources.list{,.d}; set AGENT_SANDBOX_DEBIAN_MIRROR"

work=$(mktemp -d /tmp/agent-sandbox-images.XXXXXX)
trap 'rm -rf "$work"' EXIT
python3 "$here/extra_cas.py" "$work/cas" >/dev/null

for suite in "${suites[@]}"; do
  tag="$repo:$suite"
  inputs=$( { cat "$here/build.sh" "$here/extra_cas.py"; echo "$suite $mirror ${packages[*]}";
    cat "$work"/cas/*.crt 2>/dev/null || true; } | sha256sum | cut -c1-16)
  have=$(docker image inspect -f '{{ index .Config.Labels "agent_sandbox.inputs" }}' "$tag" 2>/dev/null || true)
  if [ "$have" = "$inputs" ]; then
    echo "images: $tag is up to date ($inputs)"
    continue
  fi
  echo "images: building $tag from $mirror ($inputs)"
  root="$work/root-$suite"
  include=$(IFS=,; echo "${packages[*]}")
  debootstrap --variant=minbase --include="$include" "$suite" "$root" "$mirror" \
    >"$work/debootstrap-$suite.log" 2>&1 || { tail -n 30 "$work/debootstrap-$suite.log"; die "debootstrap $suite failed"; }

  # The layer that makes the rootfs a systemd test host.
  mkdir -p "$root/usr/local/share/ca-certificates"
  cp "$work"/cas/*.crt "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
  chroot "$root" update-ca-certificates >/dev/null 2>&1
  # Units that have no work in a container and only slow boot down or fail.
  for unit in getty.target console-getty.service systemd-firstboot.service \
    systemd-udevd.service systemd-udev-trigger.service systemd-modules-load.service \
    sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
  done
  echo "$suite" >"$root/etc/hostname"
  : >"$root/etc/machine-id"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin

  tar -C "$root" -c . | docker import - "$tag-rootfs" >/dev/null
  # docker import cannot set STOPSIGNAL; a one-step build from the imported
  # rootfs does (legacy builder: no registry, no BuildKit needed).
  printf '%s\n' "FROM $tag-rootfs" 'ENV container=docker' 'STOPSIGNAL SIGRTMIN+3' \
    'CMD ["/lib/systemd/systemd"]' "LABEL agent_sandbox.inputs=$inputs" |
    DOCKER_BUILDKIT=0 docker build -q -t "$tag" - >/dev/null 2>"$work/build-$suite.log" ||
    { cat "$work/build-$suite.log"; die "docker build $tag failed"; }
  docker rmi "$tag-rootfs" >/dev/null
  rm -rf "$root"
  echo "images: built $tag"
done
