#!/bin/sh
# SPDX-License-Identifier: MIT
# The MPI suite (tests/mpi/check_mpi.c) under mpirun: three ranks on this
# machine, rank 0 running the tests and ranks 1 and 2 serving.  Run by
# `make check` where configure found MPI and mpirun.  As root (CI), Open
# MPI wants --allow-run-as-root; --oversubscribe lets three ranks share
# fewer cores.  Shared memory between ranks, without the single-copy
# mechanism (CMA needs ptrace rights a container may not give).  A
# timeout turns a hang into a failure.
set -u
mpirun=${MPIRUN:-mpirun}
command -v "$mpirun" >/dev/null 2>&1 || { echo "SKIP: no mpirun"; exit 77; }
asroot=
[ "$(id -u)" -eq 0 ] && asroot=--allow-run-as-root
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_rmaps_base_oversubscribe=1
# Sanitized builds: no leak check — Open MPI keeps allocations until exit in
# plugins it unloads, which LeakSanitizer cannot even name (valgrind, in
# .ci/run, checks the core's own leaks).
export ASAN_OPTIONS="${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}detect_leaks=0"
exec timeout -k 10 ${WP_MPI_TIMEOUT:-900} "$mpirun" -n 3 --oversubscribe $asroot \
    "${top_builddir:-.}/tests/check_mpi"
