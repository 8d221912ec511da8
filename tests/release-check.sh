#!/usr/bin/env bash
# Fail when shipped code changed since the last release tag but galaxy.yml's
# version was not bumped. With no tag yet there is nothing to compare.
set -euo pipefail
cd "$(dirname "$0")/.."
version() { sed -n 's/^version: *//p' "$@" | tr -d '"'"'"; }
tag=$(git describe --tags --abbrev=0 2>/dev/null || true)
if [ -z "$tag" ]; then
  echo "release-check: no release tag yet; galaxy.yml says $(version galaxy.yml)"
  exit 0
fi
now=$(version galaxy.yml)
then_=$(git show "$tag:galaxy.yml" | version)
if git diff --quiet "$tag" -- plugins roles playbooks meta galaxy.yml; then
  echo "release-check: no shipped code changed since $tag"
  exit 0
fi
if [ "$now" = "$then_" ]; then
  echo "release-check: code changed since $tag but galaxy.yml still says $now; bump the version and add a CHANGELOG.md section" >&2
  exit 1
fi
echo "release-check: $tag ($then_) -> $now"
