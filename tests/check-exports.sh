#!/bin/sh
# SPDX-License-Identifier: MIT
# The shared library exports wp_* functions only (no internal wp__*, no ck).
lib="${top_builddir:-.}/lib/.libs/libworkerpool.so"
[ -f "$lib" ] || { echo "no $lib (static-only build?)"; exit 77; }
bad=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TtDdBbRrWwVv]$/ {print $3}' | grep -v '^wp_[a-z]' || true)
if [ -n "$bad" ]; then
    echo "exported symbols outside wp_*:"; echo "$bad"; exit 1
fi
n=$(nm -D --defined-only "$lib" | grep -c ' T wp_[a-z]')
echo "exports: $n wp_* functions, nothing else"
[ "$n" -ge 25 ]
