#!/usr/bin/env bash
# The main job on a built-in tiny default (see README). Grows as lorac's commands land.
set -euo pipefail
cd "$(dirname "$0")/.."
L=build/lorac
$L --help
