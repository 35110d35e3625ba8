#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# demos/thumbnails against the same job in Python (Pillow on a
# ProcessPoolExecutor: the reference peer thumbs_pil.py, sizes 1024..32,
# quality 65, optimize=True) on the same photos and worker count.
#
#   tests/bench/thumbs-vs-pil.sh BUILD_DIR [N_PHOTOS] [WORKERS] [PAIRS]
#
# Defaults 48 photos, 2 workers, 5 pairs.  The photos come from
# demos/photogen, in one flat directory (the peer reads only SRC_DIR/*.jpg).
# Each pair runs both programs, the order alternating from pair to pair so
# neither always runs on a warmer machine; every run starts from an empty
# output directory.  Prints each run's wall and CPU time (user + sys of the
# program and its children, from bash's `time`), the medians, the median of
# the per-pair ratios (peer / thumbnails: above 1 means thumbnails is
# faster), and the total bytes each wrote.  On a shared machine the figures
# are noisy: trust the medians over more pairs, not one run.
#
# The peer's path: $THUMBS_PIL, else shared/reference/thumbs_pil.py beside
# the source tree.  Python: the first of $PYTHON, python3, /usr/bin/python3
# that can import PIL (python3-pil).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 BUILD_DIR [N_PHOTOS] [WORKERS] [PAIRS]" >&2; exit 2; }
build=$(cd "$1" && pwd)
photos=${2:-48}
workers=${3:-2}
pairs=${4:-5}
here=$(cd "$(dirname "$0")" && pwd)
peer=${THUMBS_PIL:-$here/../../../shared/reference/thumbs_pil.py}
[ -f "$peer" ] || { echo "no peer at $peer (set THUMBS_PIL)" >&2; exit 2; }
python=""
for p in ${PYTHON:-} python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import PIL' 2>/dev/null; then
        python=$p
        break
    fi
done
[ -n "$python" ] || { echo "no python3 with PIL (apt-get install python3-pil)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/thumbs-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$build/demos/photogen" -j "$workers" "$photos" "$work/photos" >/dev/null 2>&1

. "$here/pairs.sh"
run_c() { pair_measure thumbnails "$work/out" "$build/demos/thumbnails" -j "$workers" "$work/photos" "$work/out"; }
run_py() { pair_measure pillow "$work/out" "$python" "$peer" "$work/photos" "$work/out" "$workers"; }

echo "$photos photos, $workers workers, $pairs pairs ($(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg))"
for pair in $(seq 1 "$pairs"); do
    if [ $((pair % 2)) -eq 1 ]; then run_c; run_py; else run_py; run_c; fi
done

pair_medians thumbnails pillow
