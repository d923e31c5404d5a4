#!/usr/bin/env bash
# Installs what optjit needs on Debian 12 (only what is missing) and configures a release
# build in ./build. Used by the README's two commands and by CI.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(cmake ninja-build clang-19 libclang-rt-19-dev llvm-19-dev llvm-19-tools libfmt-dev doctest-dev
          zlib1g-dev libzstd-dev python3)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=clang++-19 >/dev/null
cmake --build build
