#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine with only the Rust toolchain: installs what the
# tests need, then runs every test, the end-to-end ones on a real control plane included.
#
#   tests/run.sh                 everything (about 10 minutes on 2 cores)
#   REALLOAD_E2E_KUBECONFIG=...  run the end-to-end tests against that cluster instead of the
#                                bundled control plane (a KUBECONFIG already in the environment
#                                is ignored here, so a real cluster is never used by accident)
#
# What it installs (Debian packages, as root or through sudo): prometheus and
# prometheus-node-exporter (the collector's integration tests run them; promtool checks the
# alert rules), chromium and chromium-driver (the node-heat page is tested in a real headless
# browser), etcd-server, openssl, curl and xz-utils (the end-to-end tests run kube-apiserver and
# kube-scheduler on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need prometheus prometheus
need prometheus-node-exporter prometheus-node-exporter
need etcd etcd-server
need openssl openssl
need curl curl
need xz xz-utils
need promtool prometheus
need chromium chromium
need chromedriver chromium-driver
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then as_root=(); elif command -v sudo >/dev/null 2>&1; then as_root=(sudo); else
    echo "tests/run.sh: missing ${missing[*]}; install them as root: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "tests/run.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
  # The packages start services on their default ports; the tests start their own on free ports.
  if command -v systemctl >/dev/null 2>&1; then
    "${as_root[@]}" systemctl stop prometheus prometheus-node-exporter etcd >/dev/null 2>&1 || true
  fi
fi

# Unit, integration and scenario tests (the API simulator, real Prometheus and node-exporter).
cargo test --workspace

# End to end on a real kube-apiserver and kube-scheduler: one control plane for the run.
if [ -n "${REALLOAD_E2E_KUBECONFIG:-}" ]; then
  export KUBECONFIG="$REALLOAD_E2E_KUBECONFIG"
else
  unset KUBECONFIG
fi
cargo test -p realload-e2e -- --ignored --test-threads 2
