# SPDX-License-Identifier: MIT
# What the paired whole-program benchmarks share (thumbs-vs-pil.sh,
# thumbs-mpi.sh; bash, sourced): one timed run of a command that writes
# JPEGs into a directory, and the medians of runs taken in pairs.  The
# caller sets $work (a private directory: the runs are noted in
# $work/runs) and $pair (the pair number) before each run.

TIMEFORMAT='%3R %3U %3S'

# pair_measure NAME OUT COMMAND...: one run of COMMAND (its output thrown
# away) from an empty OUT; prints its wall and CPU time (user + sys of the
# command and every process under it, from bash's `time`) and what it
# wrote, and appends "NAME PAIR WALL CPU BYTES" to $work/runs.
pair_measure() {
    local name=$1 out=$2
    shift 2
    rm -rf "$out"
    local t
    t=$( { time "$@" >/dev/null 2>&1; } 2>&1 ) || { echo "$name failed: $*" >&2; exit 1; }
    local wall user sys
    read -r wall user sys <<<"$t"
    local cpu files bytes
    cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.3f", u + s }')
    files=$(find "$out" -name '*.jpg' | wc -l)
    bytes=$(find "$out" -name '*.jpg' -exec cat {} + | wc -c)
    printf '%-10s pair %d  wall %6.3f s  cpu %6.3f s  %d files  %d bytes\n' \
        "$name" "$pair" "$wall" "$cpu" "$files" "$bytes"
    echo "$name $pair $wall $cpu $bytes" >>"$work/runs"
}

# pair_medians BASE OTHER: the median wall and CPU time of each, the
# median of the per-pair ratios OTHER / BASE, and the bytes each wrote.
pair_medians() {
    awk -v base="$1" -v other="$2" '
function median(a, n,   i, j, t) {
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
$1 == base  { bw[$2] = $3; bc[$2] = $4; bb = $5; n++ }
$1 == other { ow[$2] = $3; oc[$2] = $4; ob = $5 }
END {
    for (i = 1; i <= n; i++) { a[i] = bw[i]; b[i] = ow[i]; rw[i] = ow[i] / bw[i]; x[i] = bc[i]; y[i] = oc[i]; rc[i] = oc[i] / bc[i] }
    printf "median wall: %s %.3f s, %s %.3f s; median pair ratio %s/%s %.2fx\n", base, median(a, n), other, median(b, n), other, base, median(rw, n)
    printf "median cpu:  %s %.3f s, %s %.3f s; median pair ratio %s/%s %.2fx\n", base, median(x, n), other, median(y, n), other, base, median(rc, n)
    printf "output bytes: %s %d, %s %d (%s/%s %.3f)\n", base, bb, other, ob, base, other, bb / ob
}' "$work/runs"
}
