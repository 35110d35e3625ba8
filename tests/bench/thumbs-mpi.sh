#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# demos/thumbnails on one rank (a local pool) against the same job under
# `mpirun -n RANKS thumbnails --mpi` (its workers on ranks 1 .. RANKS-1),
# with the same number of workers in all, on the same photos.
#
#   tests/bench/thumbs-mpi.sh BUILD_DIR [N_PHOTOS] [WORKERS] [RANKS] [PAIRS]
#
# Defaults 200 photos (demos/photogen), 2 workers in all, 3 ranks (so
# WORKERS / (RANKS - 1) on each serving rank, which must divide evenly), 3
# pairs.  Each pair runs both, the order alternating from pair to pair;
# every run starts from an empty output directory.  Prints each run's wall
# and CPU time (user + sys of the command and every process under it, from
# bash's `time`; under mpirun that is all ranks and their workers), the
# medians and the median of the per-pair ratios (mpi / local; pairs.sh), and checks
# once that both wrote the same files, byte for byte.  The MPI runs include
# mpirun's own start and MPI_Init; on a shared machine trust the medians
# over several pairs, not one run.  $MPIRUN names mpirun (default: the one
# on PATH).
set -euo pipefail
usage="usage: $0 BUILD_DIR [N_PHOTOS] [WORKERS] [RANKS] [PAIRS]"
build=$(cd "${1:?$usage}" && pwd)
photos=${2:-200} workers=${3:-2} ranks=${4:-3} pairs=${5:-3}
mpirun=${MPIRUN:-mpirun}
[ $((workers % (ranks - 1))) -eq 0 ] || { echo "WORKERS must divide among RANKS - 1 ranks" >&2; exit 2; }
per_rank=$((workers / (ranks - 1)))
mpi_flags=(--oversubscribe)
[ "$(id -u)" -eq 0 ] && mpi_flags+=(--allow-run-as-root)

work=$(mktemp -d "${TMPDIR:-/tmp}/thumbs-mpi-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$build/demos/photogen" -j "$workers" "$photos" "$work/photos" >/dev/null 2>&1

. "$(dirname "$0")/pairs.sh"
run_local() { pair_measure local "$work/local" "$build/demos/thumbnails" -j "$workers" "$work/photos" "$work/local"; }
run_mpi() {
    pair_measure mpi "$work/mpi" timeout 600 "$mpirun" -n "$ranks" "${mpi_flags[@]}" \
        "$build/demos/thumbnails" --mpi -j "$per_rank" "$work/photos" "$work/mpi"
}

echo "$photos photos, $workers workers: local pool vs $ranks ranks ($per_rank worker(s) on each of ranks 1..$((ranks - 1))), $pairs pairs ($(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg))"
for pair in $(seq 1 "$pairs"); do
    if [ $((pair % 2)) -eq 1 ]; then run_local; run_mpi; else run_mpi; run_local; fi
done
diff -r "$work/local" "$work/mpi" >/dev/null && echo "outputs: the same files, byte for byte" \
    || { echo "outputs differ" >&2; exit 1; }

pair_medians local mpi
