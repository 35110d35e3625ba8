#!/bin/sh
# SPDX-License-Identifier: MIT
# The shared library's exports are exactly the header's WP_EXTERN functions
# (no internal wp__*, no ck) and the private interface of lib/relay.h
# (WP_RELAY_API, for libworkerpool-mpi: node WP_PRIVATE), each with the ELF
# symbol version that lib/workerpool.map gives it, and the map names
# nothing else.
set -u
lib="${top_builddir:-.}/lib/.libs/libworkerpool.so"
header="${srcdir:-.}/include/workerpool.h"
map="${srcdir:-.}/lib/workerpool.map"
relay="${srcdir:-.}/lib/relay.h"
[ -f "$lib" ] || { echo "no $lib (static-only build?)"; exit 77; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

# name@@VERSION of every defined dynamic symbol (readelf -W: one per line).
readelf -W --dyn-syms "$lib" | awk '$1 ~ /^[0-9]+:$/ && $7 != "UND" && $7 != "ABS" && $5 != "LOCAL" { print $8 }' |
    grep -v '^_' | sort >"$tmp/exported"
# The header's WP_EXTERN functions (a declaration may span lines), and
# relay.h's WP_RELAY_API ones (declared name first, marker last).
{
    tr '\n' ' ' <"$header" | grep -o 'WP_EXTERN[^;]*;' | grep -o 'wp_[a-z_0-9]* *('
    tr '\n' ' ' <"$relay" | grep -o 'wp__relay_[a-z_]* *([^;]*) *WP_RELAY_API;' | grep -o '^wp__relay_[a-z_]* *('
} | tr -d ' (' | sort -u >"$tmp/declared"
# name@@NODE from the map: each node's globals.
awk '/^WP_[A-Z0-9.]* *\{/ { node = $1 } /^ *wp_[a-z_0-9]*;/ { sub(/;/, "", $1); print $1 "@@" node }' \
    "$map" | sort >"$tmp/mapped"

fail=0
if ! sed 's/@.*//' "$tmp/exported" | diff -u "$tmp/declared" - >"$tmp/d1"; then
    echo "exported symbols differ from the header's WP_EXTERN functions (- header, + library):"
    cat "$tmp/d1"; fail=1
fi
if ! diff -u "$tmp/mapped" "$tmp/exported" >"$tmp/d2"; then
    echo "symbol versions differ from lib/workerpool.map (- map, + library):"
    cat "$tmp/d2"; fail=1
fi
[ "$fail" -eq 0 ] || exit 1
echo "exports: $(wc -l <"$tmp/exported") functions, as the header declares, each with its map version:"
sed 's/.*@@//' "$tmp/exported" | sort | uniq -c
