#!/bin/sh
# SPDX-License-Identifier: MIT
# The thumbnails demo end to end, on files demos/photogen makes: EXIF
# orientations turned into pixels (checked by where the colours land, with
# photogen --check, so no djpeg is needed) and not copied to the output; the
# tree mirrored (a/x.jpg and a_x.jpg both kept); hostile files (a bomb
# header, a decoder-hogging JPEG, a truncated one, one that is no JPEG, a
# dangling symlink, a FIFO) each failing alone with its cause named; the
# exit status.  Runs from the build
# tree (top_builddir, set by make check; . otherwise) in a few seconds.
set -u
top=${top_builddir:-.}
thumbnails="$top/demos/thumbnails"
photogen="$top/demos/photogen"
work=$(mktemp -d "${TMPDIR:-/tmp}/thumbnails-test.XXXXXX") || exit 99
trap 'rm -rf "$work"' EXIT HUP INT TERM
failed=0

fail() { echo "FAIL: $*"; failed=1; }
ok() { echo "ok: $*"; }
# expect WHAT GOT WANTED
expect() {
    if [ "$2" = "$3" ]; then ok "$1"; else fail "$1: got '$2', wanted '$3'"; fi
}
# run NAME ARGS...: thumbnails with its status in $status, output in $work/NAME.log
run() {
    name=$1; shift
    "$thumbnails" "$@" >"$work/$name.log" 2>&1
    status=$?
}
check() { "$photogen" --check "$1" 2>&1; }

src="$work/src"
mkdir -p "$src/cards" "$src/a" || exit 99
# Cards that look 300x200, red/green/blue/white by quadrant, once turned.
for o in 1 2 3 4 5 6 7 8; do
    "$photogen" --card "$o" 300 200 "$src/cards/card$o.jpg" || exit 99
done
# Two names that a flattening thumbnailer would make the same.
"$photogen" --card 1 120 80 "$src/a/x.jpg" || exit 99
"$photogen" --card 6 80 120 "$src/a_x.jpg" || exit 99
expect "photogen: a stored-turned card carries its tag" \
    "$(check "$src/cards/card6.jpg")" "200x300 orientation=6 green white red blue"

# ----------------------------------------------------------- a clean run
run clean -j 2 "$src" "$work/out"
expect "clean run exits 0" "$status" 0
for o in 1 2 3 4 5 6 7 8; do
    expect "orientation $o upright at 1024" "$(check "$work/out/1024x1024/cards/card$o.jpg")" \
        "300x200 orientation=none red green blue white"
    expect "orientation $o upright at 64" "$(check "$work/out/64x64/cards/card$o.jpg")" \
        "64x43 orientation=none red green blue white"
done
expect "a/x.jpg kept" "$(check "$work/out/1024x1024/a/x.jpg")" \
    "120x80 orientation=none red green blue white"
expect "a_x.jpg kept apart" "$(check "$work/out/1024x1024/a_x.jpg")" \
    "80x120 orientation=none red green blue white"
expect "every size of every image" "$(find "$work/out" -name '*.jpg' | wc -l | tr -d ' ')" 60
expect "sizes named as boxes" "$(ls "$work/out" | tr '\n' ' ')" \
    "1024x1024 128x128 256x256 32x32 512x512 64x64 "
expect "32x32 of a_x.jpg" "$(check "$work/out/32x32/a_x.jpg" | cut -d' ' -f1)" 21x32

# One task per image and size: the same files, the same sizes.
run per-size --per-size -j 2 "$src" "$work/per-size"
expect "--per-size exits 0" "$status" 0
expect "--per-size: orientation 8 upright" "$(check "$work/per-size/128x128/cards/card8.jpg")" \
    "128x85 orientation=none red green blue white"
expect "--per-size: every file" "$(find "$work/per-size" -name '*.jpg' | wc -l | tr -d ' ')" 60

# ----------------------------------------------------------- hostile files
"$photogen" --hostile bomb "$src/bomb.jpg" || exit 99
"$photogen" --hostile slow "$src/slow.jpg" || exit 99
"$photogen" --hostile truncated "$src/cards/truncated.jpg" || exit 99
"$photogen" --hostile notjpeg "$src/a/notjpeg.jpg" || exit 99
ln -s no-such-file.jpg "$src/a/dangling.jpg" || exit 99
mkfifo "$src/fifo.jpg" || exit 99 # opening it would block the reader
run hostile -j 2 --timeout-ms 500 "$src" "$work/hostile"
log="$work/hostile.log"
expect "hostile run exits 1" "$status" 1
grep -q '^ *bomb.jpg: 20000x20000 is 400.0 megapixels, over the limit' "$log" \
    && ok "bomb fails on its header" || fail "bomb not reported"
grep -q '^ *slow.jpg: timed out after 500 ms' "$log" \
    && ok "slow decode fails as timed out" || fail "slow.jpg not reported as timed out"
grep -q '^ *cards/truncated.jpg: libjpeg: Premature end of JPEG file' "$log" \
    && ok "truncated file fails" || fail "truncated.jpg not reported"
grep -q '^ *a/notjpeg.jpg: libjpeg: Not a JPEG file' "$log" \
    && ok "non-JPEG fails" || fail "notjpeg.jpg not reported"
grep -q '^ *a/dangling.jpg: No such file or directory' "$log" \
    && ok "dangling symlink reported" || fail "dangling.jpg not reported"
grep -q '^ *fifo.jpg: not a regular file' "$log" \
    && ok "FIFO reported, not opened" || fail "fifo.jpg not reported"
grep -q '^6 failed:' "$log" && ok "six failures, no more" || fail "not exactly 6 failed"
expect "the good files still done" "$(find "$work/hostile" -name '*.jpg' | wc -l | tr -d ' ')" 60
expect "no temporary file left" "$(find "$work/hostile" -name '*.tmp' | wc -l | tr -d ' ')" 0

# Past the header check, the bomb meets the worker's memory limit.
mkdir -p "$work/bomb" && cp "$src/bomb.jpg" "$work/bomb/" || exit 99
run bomb --max-megapixels 0 --memory-limit 256 "$work/bomb" "$work/bomb-out"
if grep -q 'not applied under a sanitizer' "$work/bomb.log"; then
    echo "skip: memory limit (sanitizer build)"
else
    expect "bomb past the header check exits 1" "$status" 1
    grep -q 'bomb.jpg: libjpeg: Insufficient memory.*worker memory limit 256 MiB' \
        "$work/bomb.log" && ok "bomb stopped by the memory limit" || fail "bomb: $(cat "$work/bomb.log")"
fi

# ------------------------------------------------------- photogen, usage
"$photogen" -j 2 --nested --orientations 3 "$work/photos" >/dev/null 2>&1 \
    || fail "photogen --nested --orientations"
expect "photogen --nested" "$(cd "$work/photos" && find . -name '*.jpg' | sort | tr '\n' ' ')" \
    "./2023/summer/img0001.jpg ./2024/img0002.jpg ./img0000.jpg "
expect "photogen --orientations" "$(check "$work/photos/2023/summer/img0001.jpg" | cut -d' ' -f2)" \
    "orientation=6"
run photos -j 2 "$work/photos" "$work/photos-out"
expect "photos: exit 0" "$status" 0
expect "photos: tree mirrored" "$(cd "$work/photos-out/256x256" && find . -name '*.jpg' | sort | tr '\n' ' ')" \
    "./2023/summer/img0001.jpg ./2024/img0002.jpg ./img0000.jpg "

run help --help
expect "--help exits 0" "$status" 0
grep -q '^Usage: thumbnails \[options\] SRC_DIR \[OUT_DIR\]' "$work/help.log" \
    && ok "--help prints usage" || fail "--help"
if grep -q '^This build has no MPI' "$work/help.log"; then
    # The MPI form itself is tests/demos/thumbnails_mpi.sh's.
    run nompi --mpi "$src" "$work/nompi"
    expect "--mpi in a build without MPI exits 2" "$status" 2
    grep -q -- '--mpi: this build has no MPI' "$work/nompi.log" \
        && ok "--mpi without MPI says so" || fail "--mpi without MPI: $(cat "$work/nompi.log")"
fi
run usage
expect "no SRC_DIR exits 2" "$status" 2
run missing "$work/no-such-dir" "$work/x"
expect "missing SRC_DIR exits 2" "$status" 2

exit $failed
