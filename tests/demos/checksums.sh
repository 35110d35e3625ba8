#!/bin/sh
# SPDX-License-Identifier: MIT
# The checksums demo against sha256sum, and every failure cause it names:
# permission denied, no such file, is a directory, timed out (a FIFO with no
# writer), vanished during the run (deleted after the list was read, made
# deterministic by a FIFO that is only fed once the file is gone), and CSV
# errors that name the file and line.  Each listed path must come out exactly
# once: its hash on stdout, or its line in the failure report.
set -u
. "$(dirname "$0")/lib.sh"
demo_test checksums

# csv_field PATH: the path as one quoted CSV field (quotes doubled).
csv_field() {
    printf '"%s"' "$(printf '%s' "$1" | sed 's/"/""/g')"
}

# expect_report FILE: the failure report at the end of $tmp/err is exactly
# the lines of FILE.
expect_report() {
    sed -n '/^[0-9]* failed:$/,$p' "$tmp/err" >"$tmp/report"
    cmp -s "$1" "$tmp/report" || {
        echo "--- expected report"; cat "$1"
        fail "the failure report differs"
    }
}

# ----------------------------------------------------------- usage
run 0 --help
grep -q '^Usage: checksums' "$tmp/out" || fail "--help prints no usage"
run 2 --no-such-option
grep -q "Try 'checksums --help'" "$tmp/err" || fail "a bad option does not point to --help"
run 2 "$tmp/no-such-list.csv"
grep -qF "checksums: $tmp/no-such-list.csv: " "$tmp/err" || fail "a missing list is not named"

# ------------------------------------------- a tree with every cause
t="$tmp/tree"
mkdir "$t" "$t/dir"
for i in 1 2 3 4 5 6 7 8 9 10 11 12; do
    printf 'file %s\n' "$i" >"$t/f$i"
done
: >"$t/empty"
yes 0123456789abcdef | head -c 1048576 >"$t/one MiB"
printf 'comma\n' >"$t/a,b"
printf 'quote\n' >"$t/say \"hi\""
printf 'backslash\n' >"$t/back\\slash" # sha256sum escapes this one's line
printf 'secret\n' >"$t/locked"
chmod 000 "$t/locked"
mkfifo "$t/fifo" # never gets a writer: blocks in open() until the deadline
chmod -R a+rX "$tmp" && chmod 000 "$t/locked"

# The list, a header and two columns; the paths in column "path".  The
# normal files in the same order go to sha256sum for the expected output.
set -- "$t/f1" "$t/locked" "$t/f2" "$t/empty" "$t/dir" "$t/f3" "$t/one MiB" \
    "$t/fifo" "$t/a,b" "$t/missing-1" "$t/say \"hi\"" "$t/f4" "$t/back\\slash" "$t/f5" \
    "$t/f6" "$t/missing-2" "$t/f7" "$t/f8" "$t/f9" "$t/f10" "$t/f11" "$t/f12"
listed=$#
printf 'n,path,note\n' >"$tmp/list.csv"
n=0
for p in "$@"; do
    n=$((n + 1))
    printf '%s,%s,x\n' "$n" "$(csv_field "$p")" >>"$tmp/list.csv"
done
for p in "$@"; do
    case "$p" in
    "$t/locked" | "$t/dir" | "$t/fifo" | "$t"/missing-*) ;;
    *) sha256sum "$p" ;;
    esac
done >"$tmp/expected" || fail "sha256sum failed"
chmod a+r "$tmp/list.csv"

# mode 000 stops a normal user, not root: as root, run the demo without the
# capabilities that let root read anything (same uid, so it still reaches
# the build tree), or else as nobody; whichever is really refused the file.
run_as=""
if [ "$(id -u)" -eq 0 ]; then
    for r in "setpriv --bounding-set=-dac_override,-dac_read_search" \
             "setpriv --reuid=65534 --regid=65534 --clear-groups"; do
        if ! $r sh -c 'cat "$1"' sh "$t/locked" >/dev/null 2>&1 &&
            $r "$demo" --help >/dev/null 2>&1; then
            run_as=$r
            break
        fi
    done
    [ -n "$run_as" ] || fail "as root, found no way to run the demo without the power to read a mode-000 file"
    echo "as root: the tree run goes through: $run_as"
elif cat "$t/locked" >/dev/null 2>&1; then
    fail "this user can read a mode-000 file: the permission-denied case cannot be tested"
fi

$run_as "$demo" -j 2 --timeout-ms 1000 --header --column path "$tmp/list.csv" \
    >"$tmp/out" 2>"$tmp/err"
check_status 1 $? "checksums on the tree"
cmp -s "$tmp/expected" "$tmp/out" || {
    diff "$tmp/expected" "$tmp/out"
    fail "the hashes differ from sha256sum's (or are not in list order)"
}
grep -q " $listed/$listed files, 5 failed" "$tmp/err" ||
    fail "the progress line does not count $listed files, 5 failed"
{
    printf '5 failed:\n'
    printf '  %s: %s\n' "$t/locked" "permission denied" "$t/dir" "is a directory" \
        "$t/fifo" "timed out (past the 1000 ms deadline)" "$t/missing-1" "no such file" \
        "$t/missing-2" "no such file"
    printf 'failures by cause:\n'
    printf '  %6d  %s\n' 2 "no such file" 1 "is a directory" 1 "permission denied" \
        1 "timed out (past the 1000 ms deadline)"
} >"$tmp/want"
expect_report "$tmp/want"

# ------------------------------- a file that vanishes during the run
# One file in flight at a time: the gate FIFO first, then the victim.  The
# worker opens the gate only after the whole list was read (each path
# stat()ed), so once this shell's open of the gate returns, the victim is
# known to have existed; it is deleted, and only then is the gate fed and
# closed, so the victim's turn comes after it is gone.
v="$tmp/vanish"
mkdir "$v"
mkfifo "$v/gate"
printf 'victim\n' >"$v/victim"
printf 'after\n' >"$v/after"
for p in "$v/gate" "$v/victim" "$v/after"; do
    csv_field "$p"
    echo
done >"$tmp/vanish.csv"
"$demo" -j 1 --in-flight 1 "$tmp/vanish.csv" >"$tmp/out" 2>"$tmp/err" &
bg=$!
timeout 60 sh -c 'exec 3>"$1" && rm "$2" && printf "gate data\n" >&3' sh "$v/gate" "$v/victim" ||
    fail "could not open the gate FIFO, or remove the victim"
wait "$bg"
status=$?
bg=""
check_status 1 "$status" "checksums with a vanishing file"
{
    printf 'gate data\n' | sha256sum | sed "s|  -\$|  $v/gate|"
    sha256sum "$v/after"
} >"$tmp/expected"
cmp -s "$tmp/expected" "$tmp/out" || fail "the gate and after hashes are not as expected"
{
    printf '1 failed:\n  %s: vanished during the run\n' "$v/victim"
    printf 'failures by cause:\n  %6d  %s\n' 1 "vanished during the run"
} >"$tmp/want"
expect_report "$tmp/want"

# ------------------------------------------- CSV errors: file and line
# bad_csv LINE ARGS... < CSV: exit 2, nothing hashed, "LIST:LINE: " named.
bad_csv() {
    line=$1
    shift
    cat >"$tmp/bad.csv"
    run 2 "$@" "$tmp/bad.csv"
    [ -s "$tmp/out" ] && fail "a bad list still printed hashes"
    grep -qF "checksums: $tmp/bad.csv:$line: " "$tmp/err" || fail "the error does not name $tmp/bad.csv:$line"
}
printf '%s\n\n"%s"x\n' "$t/f1" "$t/f2" | bad_csv 3                      # text after a closing quote
printf '%s\n"%s\nmore\n' "$t/f1" "$t/f2" | bad_csv 2                    # a quote never closed
printf 'a,%s\nb\n' "$t/f1" | bad_csv 2 --column 2                       # no such column
printf 'name\n%s\n' "$t/f1" | bad_csv 1 --header --column path          # no such header
grep -q 'no column named "path"' "$tmp/err" || fail "the missing header column is not named"

echo "checksums: all checks passed"
