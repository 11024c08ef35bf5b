#!/usr/bin/env bash
# Installs the CMake build of bindings/cpp into a scratch prefix, then builds
# and runs two consumers: a C program through `pkg-config serl` (shared
# library) and a C++ project through `find_package(serl)` (static library).
# Usage: install_test.sh BUILD_DIR
set -euo pipefail
build=${1:?build directory of bindings/cpp}
here=$(cd "$(dirname "$0")" && pwd)
prefix=$(mktemp -d)
work=$(mktemp -d)
trap 'rm -rf "$prefix" "$work"' EXIT

cmake --install "$build" --prefix "$prefix" >/dev/null
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
echo "pkg-config --libs serl: $(pkg-config --libs serl)"
cc -std=c11 -Wall -Wextra -pedantic -Werror "$here/test_serl.c" $(pkg-config --cflags --libs serl) -lm -o "$work/c_consumer"
LD_LIBRARY_PATH="$prefix/lib" "$work/c_consumer"

cmake -S "$here/consumer" -B "$work/cmake" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/cmake" >/dev/null
"$work/cmake/consumer"
echo "install test: pkg-config and find_package consumers passed"
