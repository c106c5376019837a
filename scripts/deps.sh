#!/usr/bin/env bash
# Installs the system packages lorac needs to build and test (Debian 12), only if missing.
set -euo pipefail
pkgs=(gcc make pkg-config libopenblas-dev libopenblas0-openmp libhdf5-dev libpcre2-dev libcjson-dev libyaml-dev
      libstb-dev libjpeg62-turbo-dev libdnnl-dev ca-certificates   # libdnnl-dev: precision bf16 (oneDNN)
      openmpi-bin libopenmpi-dev   # MPI: mpirun runs (train/dist.c)
      chromium python3 python3-pil python3-protobuf protobuf-compiler)   # report + TensorBoard tests
# npm fetches the tokenizer; this image may ship Node.js outside Debian's packages
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
