#!/bin/sh
# SPDX-License-Identifier: MIT
# A whole serving rank dies (tests/mpi/rank_death.c): the job must end, with
# a non-zero status and Open MPI's message naming the rank, well inside the
# timeout — and leave no process of the job behind (the dead rank's fork
# server and workers watch their owner; the others go with mpirun's kill).
set -u
mpirun=${MPIRUN:-mpirun}
command -v "$mpirun" >/dev/null 2>&1 || { echo "SKIP: no mpirun"; exit 77; }
asroot=
[ "$(id -u)" -eq 0 ] && asroot=--allow-run-as-root
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
export ASAN_OPTIONS="${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}detect_leaks=0"
prog="${top_builddir:-.}/tests/mpi_rank_death"
log=$(mktemp) || exit 1
trap 'rm -f "$log"' EXIT
limit=300
start=$(date +%s)
timeout -k 10 "$limit" "$mpirun" -n 3 --oversubscribe $asroot "$prog" >"$log" 2>&1
rc=$?
took=$(($(date +%s) - start))
cat "$log"
# (mpirun's own status for a rank killed by SIGKILL is 137, as timeout's.)
[ "$took" -lt "$limit" ] || { echo "FAIL: the job hung (timeout after ${took}s)"; exit 1; }
[ "$rc" -ne 0 ] || { echo "FAIL: the job ended 0 after a rank died"; exit 1; }
grep -q "rank 2" "$log" || { echo "FAIL: no message naming rank 2"; exit 1; }
# Nothing of the job stays behind: its ranks, fork servers and workers all
# run the program's image.  They may take a moment to see their owner go.
real=$(dirname "$prog")/.libs/$(basename "$prog")
[ -x "$real" ] || real=$prog
for i in 1 2 3 4 5 6 7 8 9 10; do
    pgrep -f "$real" >/dev/null || { echo "rank death: the job ended ($rc) in ${took}s, nothing left"; exit 0; }
    sleep 1
done
echo "FAIL: processes of the job are still there:"; pgrep -af "$real"
exit 1
