#!/usr/bin/env bash
# Installs the system packages lorac needs to build and test (Debian 12), only if missing, so
# that `make test` on a fresh machine runs every check (tests/run.sh reports any check that
# could not run as SKIP; under CI=true a skip fails the run). Idempotent: nothing to do, no apt.
set -euo pipefail
# build: compiler, BLAS (the OpenMP build), HDF5, PCRE2, cJSON, libyaml, stb_image, libjpeg
pkgs=(gcc make pkg-config libopenblas-dev libopenblas0-openmp libhdf5-dev libpcre2-dev libcjson-dev libyaml-dev
      libstb-dev libjpeg62-turbo-dev libdnnl-dev ca-certificates   # libdnnl-dev: precision bf16 (oneDNN)
      openmpi-bin libopenmpi-dev)   # MPI: mpirun runs (autograd/dist.c)
# tests: Debian's /usr/bin/python3 with numpy (tests/fixtures_io.py, tests/model_variant.py),
# h5py (test_captions.sh reads the feature cache), PIL (tests/gen_image.py's references),
# protobuf (test_tboard.sh reads the TensorBoard event files); chromium renders report.html
# (test_report.sh); nm (binutils) for the link check; cmp/diff, od/md5sum/comm, flock and awk
# come with every Debian
pkgs+=(python3 python3-numpy python3-h5py python3-pil python3-protobuf protobuf-compiler chromium
       binutils diffutils coreutils util-linux mawk)
# `make fuzz`: clang's libFuzzer and sanitizer runtimes, and its OpenMP
pkgs+=(clang libclang-rt-14-dev libomp-14-dev)
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
