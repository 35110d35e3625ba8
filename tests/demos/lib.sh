# SPDX-License-Identifier: MIT
# What the demo tests share, sourced by each: the demo to run (from
# $top_builddir, which make check sets), a private temporary directory that
# goes at exit together with any demo still running in the background, and
# the helpers that check an exit status and fail with the demo's output.

# demo_test NAME: sets $demo (the program) and $tmp (the directory).
demo_test() {
    demo="${top_builddir:-.}/demos/$1"
    [ -x "$demo" ] || { echo "FAIL: no $demo"; exit 1; }
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/$1-test.XXXXXX") || exit 1
    bg=""
    trap demo_cleanup EXIT
    trap 'exit 1' HUP INT TERM PIPE
}

# $bg: the pid of a demo started with &, to stop if the test ends early.
demo_cleanup() {
    if [ -n "$bg" ]; then
        kill "$bg" 2>/dev/null
        wait "$bg" 2>/dev/null
    fi
    rm -rf "$tmp"
}

# fail WHY: say why, show the last run's output ($tmp/out, $tmp/err), exit 1.
fail() {
    echo "FAIL: $*"
    for f in "$tmp/out" "$tmp/err"; do
        [ -s "$f" ] && { echo "--- $f"; cat "$f"; }
    done
    exit 1
}

# check_status WANT GOT WHAT
check_status() {
    [ "$2" -eq "$1" ] || fail "$3 exited $2, not $1"
}

# run WANT ARGS...: run the demo with stdout in $tmp/out and stderr in
# $tmp/err, and check that it exits WANT.
run() {
    want=$1
    shift
    "$demo" "$@" >"$tmp/out" 2>"$tmp/err"
    check_status "$want" $? "$(basename "$demo") $*"
}
