#!/usr/bin/env bash
# Proves an image archive built by deploy/image/build.sh: unpacks the OCI archive's layers into a
# root filesystem (tar only, no container runtime) and runs the binaries from inside it with
# chroot, as user 65532, on the example cluster the image carries. Needs root (chroot).
#
#   deploy/image/check.sh [ARCHIVE]     default: target/image/realload-VERSION.oci.tar
set -euo pipefail
cd "$(dirname "$0")/../.."

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
archive=${1:-target/image/realload-${version}.oci.tar}
work=target/image/check
rm -rf "$work" && mkdir -p "$work/oci" "$work/rootfs"
tar -xf "$archive" -C "$work/oci"

blob() { echo "$work/oci/blobs/${1%%:*}/${1#*:}"; }
digests() { grep -o '"digest": *"[a-z0-9]*:[0-9a-f]*"' "$1" | sed 's/.*"\([a-z0-9]*:[0-9a-f]*\)"/\1/'; }
manifest=$(blob "$(digests "$work/oci/index.json" | head -1)")
config=$(grep -o '"config": *{[^}]*}' "$manifest" | grep -o '[a-z0-9]*:[0-9a-f]\{64\}')
grep -q "\"ref.name\": *\"ghcr.io/realload/realload:${version}\"\|\"org.opencontainers.image.ref.name\": *\"ghcr.io/realload/realload:${version}\"" \
  "$work/oci/index.json" || { echo "check.sh: the archive is not tagged ghcr.io/realload/realload:${version}" >&2; exit 1; }
layers=0
for d in $(digests "$manifest"); do
  [ "$d" = "$config" ] && continue
  tar -xf "$(blob "$d")" -C "$work/rootfs"
  layers=$((layers + 1))
done
cfg=$(blob "$config")
grep -q '"User": *"65532:65532"' "$cfg" || { echo "check.sh: the image does not run as 65532" >&2; exit 1; }

run() { chroot --userspec=65532:65532 "$work/rootfs" "$@"; }
echo "image: $layers layer(s), $(du -sh "$work/rootfs" | cut -f1) unpacked, $(du -h "$archive" | cut -f1) archive"
echo "contents:"; (cd "$work/rootfs" && find . -type f | sort | sed 's/^\./  /')
run /realload-extender --version
run /realload-descheduler --version
example=/usr/share/realload/example
run /realload-extender explain --snapshot $example/cluster.json --pod $example/pod.yaml \
  --now 2026-11-22T01:05:00Z --output json > "$work/explain.json"
[ "$(grep -c '"node": "node-' "$work/explain.json")" -eq 8 ] || { echo "check.sh: explain did not rank the example's 8 nodes" >&2; exit 1; }
run /realload-descheduler --snapshot $example/cluster.json --now 2026-11-22T01:05:00Z --output json > "$work/plan.json"
grep -q '"workload": "Deployment/shop/api"' "$work/plan.json" || { echo "check.sh: the descheduler did not plan the example's eviction" >&2; exit 1; }
echo "image check passed: --version, explain and the descheduler ran inside the image as 65532"
