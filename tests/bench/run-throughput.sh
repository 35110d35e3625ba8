#!/bin/sh
# SPDX-License-Identifier: MIT
# run-throughput.sh — workerpool's throughput benchmark and its peer,
# Python's ProcessPoolExecutor, run one after the other on the same machine
# with the same options, then a short comparison.
#
# Why both in one go: absolute tasks/s and microseconds swing with the
# machine and its load; the ratio between two pools measured minutes apart
# on the same machine is what says where workerpool stands.
#
# Usage: tests/bench/run-throughput.sh [BUILD_DIR] [--quick] [-n N] [-w N] [--fork]
#   BUILD_DIR  the top of the build tree that holds tests/bench/throughput
#              (default: the source tree, for an in-tree build)
#   options    passed unchanged to both programs (see throughput --help)
# Ratios are workerpool ÷ python: above 1 is better for tasks/s, below 1 is
# better for latency.
# Exit status: non-zero if either program failed (a failed task voids it).

set -u

here=$(cd "$(dirname "$0")" && pwd)
build=$here/../..
case ${1-} in
    '' | -*) ;;
    *) build=$1; shift ;;
esac
bench=$build/tests/bench/throughput
peer=$here/peer_processpool.py

if [ ! -x "$bench" ]; then
    echo "run-throughput.sh: $bench not found; build the project first" >&2
    exit 2
fi

tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT

# Runs "$@", showing its output as it comes and keeping a copy in $tmp/$name;
# prints nothing else and returns the program's own exit status.
run_logged() {
    name=$1
    shift
    { "$@"; echo $? >"$tmp/$name.rc"; } | tee "$tmp/$name.out"
    return "$(cat "$tmp/$name.rc")"
}

# The value of KEY on the first line of FILE whose first word is KIND and
# which holds the word WANT (any line of that kind if WANT is empty).
field() {
    awk -v kind="$2" -v key="$3=" -v want="${4-}" '
        $1 == kind && (want == "" || index(" " $0 " ", " " want " ")) {
            for (i = 2; i <= NF; i++)
                if (index($i, key) == 1) { print substr($i, length(key) + 1); exit }
        }' "$1"
}

# a ÷ b to three significant digits, or n/a when either is missing.
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a != "" && b != "" && b + 0 > 0) printf "%.3g", a / b; else printf "n/a" }'
}

# One comparison line: LABEL, then the workerpool and python figures.
compare() {
    printf 'compare     %-26s workerpool=%-10s python=%-10s ratio=%s\n' \
        "$1" "${2:-n/a}" "${3:-n/a}" "$(ratio "$2" "$3")"
}

echo "== workerpool: $bench $*"
run_logged wp "$bench" "$@"
wp_rc=$?

if ! command -v python3 >/dev/null 2>&1; then
    echo "== python3 not found: skipping the ProcessPoolExecutor peer"
    exit "$wp_rc"
fi
echo
echo "== peer: python3 $peer $*"
run_logged py python3 -u "$peer" "$@"
py_rc=$?

wp=$tmp/wp.out
py=$tmp/py.out
echo
echo "== comparison, workerpool ÷ python (same machine, same options)"
compare "tasks/s 1 thread, submit" \
    "$(field "$wp" throughput 'tasks/s' threads=1)" \
    "$(field "$py" throughput 'tasks/s' mode=submit)"
compare "tasks/s 1 thread, map" \
    "$(field "$wp" throughput 'tasks/s' threads=1)" \
    "$(field "$py" throughput 'tasks/s' mode=map-chunksize1)"
for p in p50 p99; do
    compare "latency ${p}_us" \
        "$(field "$wp" latency "${p}_us")" "$(field "$py" latency "${p}_us")"
done

[ "$wp_rc" -eq 0 ] && [ "$py_rc" -eq 0 ]
