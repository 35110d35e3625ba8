#!/bin/sh
# SPDX-License-Identifier: MIT
# The thumbnails demo's --mpi form: under `mpirun -n 3`, rank 0 drives and
# the workers run on ranks 1 and 2.  On a small tree demos/photogen makes
# (nested photos, EXIF orientations, and hostile files: a truncated one, a
# non-JPEG, a decoder-hogging one that meets its deadline, a bomb header)
# it must write byte for byte the files a local run writes, report the same
# failures with the same causes, and exit with the same status; and the
# workers must have been on ranks 1 and 2, not on rank 0.  Run by make
# check only where configure found mpirun (MPIRUN, which make check sets);
# every mpirun is bounded by `timeout`.
set -u
top=${top_builddir:-.}
. "$(dirname "$0")/lib.sh"
demo_test thumbnails
photogen="$top/demos/photogen"
MPIRUN=${MPIRUN:-mpirun}
MPI_TIMEOUT_S=120   # a run takes a few seconds; a hang fails instead of waiting forever
RANKS=3
# Deadline per task: slow.jpg takes seconds to decode, a photo tens of ms;
# wide enough for a loaded machine, where a photo's time stretches.
SLOW_TIMEOUT_MS=2000
OBSERVED_TIMEOUT_MS=3000 # the run whose workers are looked for: longer still

# Open MPI refuses root unless told, and this machine may have fewer cores
# than ranks.  Sanitized builds: no leak check, as in tests/mpi/run.sh
# (Open MPI keeps allocations until exit in plugins it unloads).
export ASAN_OPTIONS="${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}detect_leaks=0"
# One machine: shared memory between the ranks, as tests/mpi/run.sh (Open
# MPI's TCP transport, loaded otherwise, trips ThreadSanitizer with its own
# lock order).
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
mpi_flags="--oversubscribe"
[ "$(id -u)" -eq 0 ] && mpi_flags="$mpi_flags --allow-run-as-root"

# mpi_run WANT ARGS...: the demo under mpirun, with --mpi, like run.
mpi_run() {
    want=$1
    shift
    # shellcheck disable=SC2086 # mpi_flags is a list of flags
    timeout "$MPI_TIMEOUT_S" "$MPIRUN" -n "$RANKS" $mpi_flags "$demo" --mpi "$@" \
        >"$tmp/out" 2>"$tmp/err"
    check_status "$want" $? "mpirun -n $RANKS thumbnails --mpi $*"
}

# failures LOG: the demo's list of failures (from "N failed:" to "failures
# by cause:"), without what mpirun adds to stderr.
failures() { sed -n '/^[0-9]* failed:$/,/^failures by cause:$/p' "$1"; }

src="$tmp/src"
"$photogen" -j 2 --nested --orientations 6 "$src" >/dev/null 2>&1 || fail "photogen"
"$photogen" --hostile truncated "$src/2024/truncated.jpg" || fail "photogen truncated"
"$photogen" --hostile notjpeg "$src/notjpeg.jpg" || fail "photogen notjpeg"
"$photogen" --hostile slow "$src/slow.jpg" || fail "photogen slow"
"$photogen" --hostile bomb "$src/bomb.jpg" || fail "photogen bomb"
hostile=4
args="-j 1 --timeout-ms $SLOW_TIMEOUT_MS"

# ------------------------------------------------------------ local first
run 1 $args "$src" "$tmp/local"
grep -q "^$hostile failed:" "$tmp/err" || fail "local run: not exactly $hostile failed"
cp "$tmp/out" "$tmp/local.out" && cp "$tmp/err" "$tmp/local.err" || exit 1
echo "ok: local run exits 1, $hostile failed"

# ------------------------------------------------------- the same, on MPI
mpi_run 1 $args "$src" "$tmp/mpi"
echo "ok: mpirun -n $RANKS thumbnails --mpi exits 1"
[ "$(failures "$tmp/local.err")" = "$(failures "$tmp/err")" ] \
    || fail "--mpi: failures differ from the local run's, which were:
$(failures "$tmp/local.err")"
echo "ok: the same failures, the same causes (slow.jpg timed out on another rank)"
sed "s|$tmp/mpi/|OUT/|" "$tmp/out" >"$tmp/mpi.summary"
sed "s|$tmp/local/|OUT/|" "$tmp/local.out" >"$tmp/local.summary"
cmp -s "$tmp/local.summary" "$tmp/mpi.summary" \
    || fail "--mpi: summary line differs: $(cat "$tmp/local.summary")"
echo "ok: the same summary line"
(cd "$tmp/local" && find . -type f | sort) >"$tmp/local.files"
(cd "$tmp/mpi" && find . -type f | sort) >"$tmp/mpi.files"
cmp -s "$tmp/local.files" "$tmp/mpi.files" || fail "--mpi: not the same files"
n=$(wc -l <"$tmp/mpi.files" | tr -d ' ')
[ "$n" -eq 36 ] || fail "--mpi: $n files, not 6 photos x 6 sizes"
while read -r f; do
    cmp -s "$tmp/local/$f" "$tmp/mpi/$f" || fail "--mpi: $f differs from the local run's"
done <"$tmp/mpi.files"
echo "ok: the same $n files, byte for byte"

# ------------------------------------------ the workers were on ranks 1-2
# While a run is under way (slow.jpg holds a worker for its whole deadline),
# find the workers: copies of the demo whose parent (a fork server) and
# grandparent (a rank) carry the same OMPI_COMM_WORLD_RANK in their
# environment (mpirun gives it to each rank; a fork inherits it).  Ranks 1
# and 2 must have them, rank 0 none.  The look repeats until both are seen
# or the job ends.
rank_of() { { tr '\0' '\n' <"/proc/$1/environ"; } 2>/dev/null | sed -n 's/^OMPI_COMM_WORLD_RANK=//p'; }
# worker_ranks: the ranks that have workers now, sorted, on one line.
worker_ranks() {
    ps -e -o pid=,ppid=,comm= | while read -r pid ppid comm; do
        case "$comm" in *thumbnails) ;; *) continue ;; esac
        r=$(rank_of "$pid")
        [ -n "$r" ] && [ "$r" = "$(rank_of "$ppid")" ] || continue
        [ "$r" = "$(rank_of "$(ps -o ppid= -p "$ppid" | tr -d ' ')")" ] && echo "$r"
    done | sort -u | tr '\n' ' '
}
# shellcheck disable=SC2086
timeout "$MPI_TIMEOUT_S" "$MPIRUN" -n "$RANKS" $mpi_flags "$demo" --mpi -j 1 --timeout-ms "$OBSERVED_TIMEOUT_MS" \
    "$src" "$tmp/mpi2" >"$tmp/out" 2>"$tmp/err" &
bg=$!
seen=""
while kill -0 "$bg" 2>/dev/null; do
    seen=$(worker_ranks)
    [ "$seen" = "1 2 " ] && break
    case "$seen" in 0*) break ;; esac
    sleep 0.05 # a look at the process table, not a wait for a result
done
wait "$bg"
check_status 1 $? "the observed --mpi run"
bg=""
[ "$seen" = "1 2 " ] || fail "--mpi: ranks with workers: '$seen', wanted '1 2 '"
echo "ok: the workers ran on ranks 1 and 2, none on rank 0"

# ------------------------------------------------------------- refusals
run 2 --mpi -j 1 "$src" "$tmp/alone"
grep -q -- '--mpi needs ranks to put workers on' "$tmp/err" \
    || fail "--mpi outside mpirun: no clear message"
echo "ok: --mpi alone (no mpirun) exits 2 and says why"
exit 0
