#!/bin/sh
# SPDX-License-Identifier: MIT
# run-peers.sh — workerpool's small-task benchmarks, each run side by side
# with its peers in one go on the same machine, then ratios.
#
#   tiny        tests/bench/tiny (wp_submit from 1, 4 and 8 threads with 256
#               outstanding each, wp_submit_many) beside Python's
#               ProcessPoolExecutor (submit, map chunksize=64) and
#               multiprocessing.Pool (apply_async), and the reference
#               sketch pool at depth 8 (-m 1/4/8 threads, window 256);
#   roundtrip   tests/bench/roundtrip (one task at a time, and its own raw
#               pipe ping-pong) beside the reference pipe_rtt and
#               ProcessPoolExecutor;
#   headofline  tests/bench/headofline beside ProcessPoolExecutor;
#   queuemem    tests/bench/queuemem, wp_submit and wp_submit_many (no peer).
# Python is /usr/bin/python3 (Debian's 3.11) unless PYTHON says otherwise.
#
# Why one go: absolute figures swing with the machine's load; ratios of
# programs run minutes apart on the same machine are what say where
# workerpool stands.  The figures are still noisy on a shared machine: run
# it twice before believing a difference of 10%.
#
# The reference programs (pipe_rtt.c, sketch_pool.c) are measuring sticks
# kept outside the project; they are compiled here, at run time, into a
# temporary directory, from REFERENCE_DIR (default: ../shared/reference
# beside the top of this tree), and skipped with a note if it is missing.
#
# Usage: tests/bench/run-peers.sh [BUILD_DIR] [--quick] [--fork] [-n TASKS] [BENCH...]
#   BUILD_DIR  the top of the build tree holding tests/bench/tiny (default:
#              the source tree, for an in-tree build)
#   --quick    short runs (tiny 20000 tasks, roundtrip 2000 samples,
#              queuemem 100000 tasks)
#   --fork     WP_START_FORK for workerpool, and fork for Python
#   -n TASKS   tasks per tiny case, for every pool (default 200000)
#   BENCH      any of tiny roundtrip headofline queuemem (default: all)
# Ratios are workerpool ÷ peer: above 1 is better for tasks/s, below 1 is
# better for µs and seconds.
# Exit status: non-zero if any program failed (a failed task voids it).

set -u

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
build=$top
case ${1-} in
    '' | -* | tiny | roundtrip | headofline | queuemem) ;;
    *) build=$1; shift ;;
esac
python=${PYTHON:-/usr/bin/python3}
reference=${REFERENCE_DIR:-$top/../shared/reference}
quick=
fork=
tasks=200000
benches=
while [ $# -gt 0 ]; do
    case $1 in
        --quick) quick=--quick; tasks=20000 ;;
        --fork) fork=--fork ;;
        -n) tasks=${2:?-n needs a count}; shift ;;
        tiny | roundtrip | headofline | queuemem) benches="$benches $1" ;;
        *) echo "run-peers.sh: unknown argument: $1 (see the top of this file)" >&2; exit 2 ;;
    esac
    shift
done
[ -n "$benches" ] || benches="tiny roundtrip headofline queuemem"
if [ ! -x "$build/tests/bench/tiny" ]; then
    echo "run-peers.sh: $build/tests/bench/tiny not found; build the project first" >&2
    exit 2
fi

tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
failed=0

# run NAME COMMAND...: shows the output as it comes, keeps a copy in
# $tmp/NAME.out, and counts a failure.
run() {
    name=$1
    shift
    echo "== $*"
    { "$@"; echo $? >"$tmp/$name.rc"; } | tee "$tmp/$name.out"
    [ "$(cat "$tmp/$name.rc")" -eq 0 ] || failed=$((failed + 1))
    echo
}

# run_reference NAME COMMAND...: a reference program, given REF_TIMEOUT
# seconds (default 60) and a second try: the sketch pool has no error
# handling and now and then stalls (seen with 8 submitters).  Its failure
# leaves a note, never voids workerpool's figures.
run_reference() {
    name=$1
    shift
    for try in 1 2; do
        echo "== $* (try $try, at most ${REF_TIMEOUT:-60} s)"
        timeout "${REF_TIMEOUT:-60}" "$@" >"$tmp/$name.out" 2>&1
        rc=$?
        cat "$tmp/$name.out"
        echo
        [ "$rc" -eq 0 ] && return 0
        echo "note: the reference $(basename "$1") failed or timed out (status $rc)"
        rm -f "$tmp/$name.out"
    done
    return 1
}

# The value of RESULT KEY in the output of NAME (empty if absent).
res() {
    [ -f "$tmp/$1.out" ] && awk -v k="$2" '$1 == "RESULT" && $2 == k { print $3; exit }' "$tmp/$1.out"
}

# compare LABEL WP_VALUE PEER_NAME PEER_VALUE: one comparison line.
compare() {
    awk -v l="$1" -v a="$2" -v p="$3" -v b="$4" 'BEGIN {
        r = (a != "" && b != "" && b + 0 > 0) ? sprintf("%.3g", a / b) : "n/a"
        printf "compare  %-34s workerpool=%-11s %-15s=%-11s ratio=%s\n", l,
            (a == "" ? "n/a" : a), p, (b == "" ? "n/a" : b), r
        if (r != "n/a") {
            gsub(/[^A-Za-z0-9]+/, "_", l)
            printf "RESULT ratio_%s_vs_%s %s x\n", l, p, r
        }
    }'
}

# Builds reference program NAME into $tmp (once); false, with a note, if
# it cannot be.
reference_built() {
    [ -x "$tmp/$1" ] && return 0
    if [ ! -f "$reference/$1.c" ]; then
        echo "note: $reference/$1.c not found: skipping the reference $1"
        return 1
    fi
    if ! cc -O2 -std=gnu11 -pthread -o "$tmp/$1" "$reference/$1.c" -lck 2>"$tmp/$1.cc"; then
        echo "note: the reference $1 did not build (skipped):"
        cat "$tmp/$1.cc"
        return 1
    fi
}

have_python() {
    [ -x "$python" ] && return 0
    echo "note: $python not found: skipping the Python peers"
    return 1
}

bench_tiny() {
    run tiny "$build/tests/bench/tiny" $fork -n "$tasks"
    have_python && run py_tiny "$python" -u "$here/peer_processpool.py" --bench tiny -n "$tasks"
    if reference_built sketch_pool; then
        for m in 1 4 8; do
            run_reference "sketch_m$m" "$tmp/sketch_pool" -w 2 -d 8 -m "$m" -W 256 -n "$tasks"
        done
    fi
    echo "== tiny: workerpool ÷ peer"
    for what in tasks_per_s cpu_us_per_task; do
        wp1=$(res tiny "tiny_submit_t1_$what")
        compare "submit T=1 $what" "$wp1" ppe_submit "$(res py_tiny "py_tiny_ppe_submit_$what")"
        compare "submit T=1 $what" "$wp1" mp_apply_async \
            "$(res py_tiny "py_tiny_mp_apply_async_$what")"
        compare "submit_many $what" "$(res tiny "tiny_many_t1_$what")" ppe_map64 \
            "$(res py_tiny "py_tiny_ppe_map64_$what")"
        for m in 1 4 8; do
            compare "submit T=$m $what" "$(res tiny "tiny_submit_t${m}_$what")" \
                "sketch_d8_m$m" "$(res "sketch_m$m" "pool_w2_d8_m${m}_W256_$what")"
        done
        compare "submit_many $what" "$(res tiny "tiny_many_t1_$what")" sketch_d8_m1 \
            "$(res sketch_m1 "pool_w2_d8_m1_W256_$what")"
    done
    echo
}

bench_roundtrip() {
    samples=20000
    [ -n "$quick" ] && samples=2000
    run roundtrip "$build/tests/bench/roundtrip" $fork -n "$samples"
    reference_built pipe_rtt && run_reference pipe_rtt "$tmp/pipe_rtt" pipe 1 "$samples" 48
    have_python &&
        run py_roundtrip "$python" -u "$here/peer_processpool.py" --bench roundtrip $fork -n "$samples"
    echo "== roundtrip: workerpool ÷ peer (one empty task at a time)"
    for p in p50 p99; do
        wp=$(res roundtrip "roundtrip_pool_$p")
        compare "round trip $p us" "$wp" own_rawpipe "$(res roundtrip "roundtrip_rawpipe_$p")"
        ref=median
        [ "$p" = p99 ] && ref=p99
        compare "round trip $p us" "$wp" ref_pipe_rtt "$(res pipe_rtt "pipe_b1_rtt_$ref")"
        compare "round trip $p us" "$wp" ppe "$(res py_roundtrip "py_roundtrip_ppe_$p")"
    done
    echo
}

bench_headofline() {
    run headofline "$build/tests/bench/headofline" $fork
    have_python && run py_headofline "$python" -u "$here/peer_processpool.py" --bench headofline $fork
    echo "== headofline: workerpool ÷ peer (short tasks behind a long one)"
    for k in short_p50 short_p99 short_max; do
        compare "$k us" "$(res headofline "headofline_$k")" ppe \
            "$(res py_headofline "py_headofline_$k")"
    done
    for k in shorts_done total; do
        compare "$k s" "$(res headofline "headofline_$k")" ppe \
            "$(res py_headofline "py_headofline_$k")"
    done
    echo "behind the long task: workerpool=$(res headofline headofline_shorts_behind_long)" \
        "ppe=$(res py_headofline py_headofline_shorts_behind_long)"
    echo
}

bench_queuemem() {
    n=1000000
    [ -n "$quick" ] && n=100000
    run queuemem "$build/tests/bench/queuemem" $fork -n "$n"
    run queuemem_many "$build/tests/bench/queuemem" $fork --many -n "$n"
    echo "== queuemem: library bytes per queued task (no peer):" \
        "wp_submit $(res queuemem queuemem_submit_bytes_per_task)," \
        "wp_submit_many $(res queuemem_many queuemem_many_bytes_per_task)"
    echo
}

echo "# run-peers.sh on $(uname -n): $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg)"
for b in $benches; do
    "bench_$b"
done
[ "$failed" -eq 0 ] || echo "run-peers.sh: $failed program(s) failed; their figures are void" >&2
[ "$failed" -eq 0 ]
