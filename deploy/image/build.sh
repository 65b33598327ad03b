#!/usr/bin/env bash
# Builds the realload image offline, as an OCI archive, with buildah (no daemon, no registry).
#
#   deploy/image/build.sh [--stage-only]
#
# 1. cargo build --release of realload-extender and realload-descheduler;
# 2. stages target/image/rootfs: the binaries at /, every shared library `ldd` lists for them,
#    the CA bundle (for Prometheus over HTTPS), /etc/passwd, /etc/group, /etc/nsswitch.conf
#    and the example cluster at /usr/share/realload;
# 3. buildah bud --storage-driver vfs on deploy/image/Containerfile (FROM scratch), then
#    pushes to target/image/realload-VERSION.oci.tar, tagged ghcr.io/realload/realload:VERSION.
#
# --stage-only stops after step 2 (for `docker build -f deploy/image/Containerfile
# target/image/rootfs`). The architecture is the build machine's (linux/amd64 on x86_64).
set -euo pipefail
cd "$(dirname "$0")/../.."

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
image="ghcr.io/realload/realload:${version}"
out=target/image
root="$out/rootfs"

cargo build --release --locked -p realload-extender -p realload-descheduler
rm -rf "$root"
mkdir -p "$root/usr/share/realload/example" "$root/etc/ssl/certs" "$root/tmp"
chmod 1777 "$root/tmp"
bins=(target/release/realload-extender target/release/realload-descheduler)
cp "${bins[@]}" "$root/"
strip "$root/realload-extender" "$root/realload-descheduler" 2>/dev/null || true
# The dynamic loader and the libraries the binaries link, at the paths the binaries look for.
for lib in $(ldd "${bins[@]}" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u); do
  cp --parents -L "$lib" "$root/"
done
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
fi
cp docs/example/cluster.json docs/example/pod.yaml "$root/usr/share/realload/example/"
printf 'root:x:0:0:root:/:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/:/sbin/nologin\n' > "$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$root/etc/group"
# Names from /etc/hosts first, then DNS (glibc 2.34+ carries both lookups in libc itself).
printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
echo "staged $root ($(du -sh "$root" | cut -f1))"
[ "${1:-}" = "--stage-only" ] && exit 0

command -v buildah >/dev/null || { echo "build.sh: buildah not found (apt-get install -y buildah)" >&2; exit 1; }
archive="$out/realload-${version}.oci.tar"
rm -f "$archive"
buildah --storage-driver vfs bud --quiet --layers=false --format oci \
  -f "$PWD/deploy/image/Containerfile" -t "$image" "$root" >/dev/null
buildah --storage-driver vfs push --quiet "$image" "oci-archive:$archive:$image"
buildah --storage-driver vfs rmi "$image" >/dev/null 2>&1 || true
echo "built $image -> $archive ($(du -h "$archive" | cut -f1))"
