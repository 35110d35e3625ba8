#!/bin/sh
# SPDX-License-Identifier: MIT
# ab-compare.sh — no regression: an older commit's build against this
# tree's build, the same benchmarks run alternately, medians and new/old.
#
# What it does: checks out OLD (HEAD~N, a hash, a branch) as a detached git
# worktree in a temporary directory, builds there only what it needs
# (autoreconf, configure, make of the library and tests/bench/control and
# tests/bench/batcher), then runs control and batcher from the old build
# and from NEW — the build tree given as BUILD_DIR (default: this source
# tree, built in place), so uncommitted changes count — in PAIRS A/B pairs,
# swapping the order in every other pair (old-new, new-old, ...) so that a
# drift in the machine's load falls on both sides alike.  Then, for every
# figure, the median of each side and the ratio new ÷ old: above 1 is
# better for items/s, below 1 is better for µs.  Each binary is its own
# tree's, so if the benchmark sources differ between OLD and NEW a note says
# so (a figure may then move for that reason too).
#
# Usage: tests/bench/ab-compare.sh [--pairs N] [--full] [BUILD_DIR] OLD
#   OLD        the commit to compare against, e.g. HEAD~1
#   BUILD_DIR  the new build tree (default: the top of this source tree)
#   --pairs N  A/B pairs (default 5)
#   --full     batcher at its default sizes (default: batcher --quick,
#              which keeps the whole run, the old build included, at about
#              1.5 minutes on 2 cores; --full about 4 minutes and steadier
#              batcher figures); control always runs its default 200
#              samples per figure
# Needs git and the project's build tools.  Figures are printed, never
# judged: the exit status is non-zero only if a build or a run failed.

set -u

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
pairs=5
full=
build=$top
old=
while [ $# -gt 0 ]; do
    case $1 in
        --pairs) pairs=${2:?--pairs needs a count}; shift ;;
        --full) full=1 ;;
        -*) echo "ab-compare.sh: unknown option $1 (see the top of this file)" >&2; exit 2 ;;
        *) if [ -n "$old" ]; then build=$old; fi; old=$1 ;;
    esac
    shift
done
if [ -z "$old" ]; then
    echo "usage: ab-compare.sh [--pairs N] [--full] [BUILD_DIR] OLD   (e.g. HEAD~1)" >&2
    exit 2
fi
for prog in control batcher; do
    if [ ! -x "$build/tests/bench/$prog" ]; then
        echo "ab-compare.sh: $build/tests/bench/$prog not found; build the project first" >&2
        exit 2
    fi
done
rev=$(git -C "$top" rev-parse --verify --quiet "$old^{commit}") || {
    echo "ab-compare.sh: $old is not a commit of $top" >&2
    exit 2
}

tmp=$(mktemp -d) || exit 2
cleanup() {
    git -C "$top" worktree remove --force "$tmp/old" >/dev/null 2>&1
    git -C "$top" worktree prune >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 2' INT TERM

echo "# ab-compare: old=$old ($(git -C "$top" log -1 --format='%h %s' "$rev" | cut -c1-70))"
echo "# new=$build  pairs=$pairs  $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg)"
if ! git -C "$top" diff --quiet "$rev" -- tests/bench/control.c tests/bench/batcher.c; then
    echo "note: tests/bench/control.c or batcher.c differ between $old and this tree"
fi

echo "== building $old in $tmp/old"
start=$(date +%s)
git -C "$top" worktree add --detach "$tmp/old" "$rev" >/dev/null 2>&1 || {
    echo "ab-compare.sh: git worktree add failed" >&2
    exit 2
}
(
    cd "$tmp/old" &&
        autoreconf -fi >/dev/null 2>&1 &&
        ./configure -q CFLAGS="-O2 -g" >/dev/null &&
        make -j"$(nproc)" lib/libworkerpool.la tests/bench/control tests/bench/batcher >/dev/null
) >"$tmp/build.log" 2>&1 || {
    echo "ab-compare.sh: the old build failed:" >&2
    tail -n 20 "$tmp/build.log" >&2
    exit 2
}
echo "built in $(($(date +%s) - start)) s"

control_args=
batcher_args="--quick"
[ -z "$full" ] || batcher_args=

# figures SIDE < output: one line "SIDE FIGURE VALUE" per figure.
#   control: "deadline samples=.. p50_us=.. p99_us=.. max_us=.."
#   batcher: "batcher nofuture batch=16 ... items/s=.. ... mean_wait_us=.."
figures() {
    awk -v side="$1" '
        function val(key,   i) {
            for (i = 2; i <= NF; i++)
                if (index($i, key "=") == 1) return substr($i, length(key) + 2)
            return ""
        }
        $1 ~ /^#/ { next }
        val("p50_us") != "" && val("items/s") == "" {
            for (k = 1; k <= 3; k++) {
                m = k == 1 ? "p50_us" : k == 2 ? "p99_us" : "max_us"
                print side, "control." $1 "." m, val(m)
            }
        }
        val("items/s") != "" {
            # batcher lines by batch size; the plain-submit lines by mode
            name = $1 == "batcher" ? "batcher." $2 ".b" val("batch") : "batcher." $1 "." $2
            print side, name ".items/s", val("items/s")
            if (val("mean_wait_us") != "") print side, name ".mean_wait_us", val("mean_wait_us")
        }'
}

# run_side SIDE DIR PAIR: control then batcher from the build in DIR.
run_side() {
    for prog in control batcher; do
        args=$control_args
        [ "$prog" = batcher ] && args=$batcher_args
        # shellcheck disable=SC2086 # the arguments are words on purpose
        if ! "$2/tests/bench/$prog" $args >"$tmp/run.out" 2>"$tmp/run.err"; then
            echo "ab-compare.sh: $1 $prog failed (pair $3):" >&2
            cat "$tmp/run.err" >&2
            exit 1
        fi
        figures "$1" <"$tmp/run.out" >>"$tmp/figures"
    done
}

: >"$tmp/figures"
i=1
while [ "$i" -le "$pairs" ]; do
    printf '== pair %s of %s: ' "$i" "$pairs"
    if [ $((i % 2)) -eq 1 ]; then
        echo "old, new"
        run_side old "$tmp/old" "$i"
        run_side new "$build" "$i"
    else
        echo "new, old"
        run_side new "$build" "$i"
        run_side old "$tmp/old" "$i"
    fi
    i=$((i + 1))
done

echo
echo "== medians over $pairs pairs; ratio = new / old (items/s: above 1 is better; us: below 1)"
printf '%-42s %12s %12s %8s\n' figure old new ratio
# Medians per (figure, side), in the order figures first appeared.
awk '
    !(($2) in seen) { seen[$2] = 1; order[++n] = $2 }
    { k = $2 SUBSEP $1; c = ++count[k]; v[k, c] = $3 + 0 }
    function median(k,   c, i, j, t, a) {
        c = count[k]
        if (c == 0) return ""
        for (i = 1; i <= c; i++) a[i] = v[k, i]
        for (i = 2; i <= c; i++)
            for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
        return c % 2 ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2
    }
    END {
        for (i = 1; i <= n; i++) {
            f = order[i]
            o = median(f SUBSEP "old"); w = median(f SUBSEP "new")
            r = (o != "" && w != "" && o > 0) ? sprintf("%.3f", w / o) : "n/a"
            printf "%-42s %12s %12s %8s\n", f, o, w, r
            key = f; gsub(/[^A-Za-z0-9]+/, "_", key)
            if (r != "n/a") results = results sprintf("RESULT ab_%s_new_over_old %s x\n", key, r)
        }
        printf "%s", results
    }' "$tmp/figures"
