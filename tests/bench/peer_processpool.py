#!/usr/bin/env python3
"""The peer for tests/bench/throughput: the same cases on Python's
concurrent.futures.ProcessPoolExecutor, which workerpool sets out to be the
C answer to.

Measures, on one executor (2 workers, forkserver start unless told):
  a. empty-task throughput, 1 submitting thread, N tasks: submit all then
     wait (mode=submit, what throughput.c does), and executor.map with
     chunksize=1 (mode=map-chunksize1, Python's own streaming path);
  b. round-trip latency: submit one empty task, wait for it, repeat;
     N/10 samples (at most 20000) after a twentieth as many warm-up rounds,
     nearest-rank percentiles computed exactly as throughput.c does.

Why: a figure for workerpool alone says little; the same cases run by the
best-known peer on the same machine at the same time say how far ahead or
behind it is.  Accepts throughput's options so run-throughput.sh can hand
both the same arguments.  Standard library only.  Exits non-zero if any
task failed.
"""

import argparse
import concurrent.futures as cf
import multiprocessing
import os
import sys
import time

PEER = "python-ProcessPoolExecutor"
DEFAULT_TASKS = 200000
QUICK_TASKS = 20000
MAX_LATENCY_SAMPLES = 20000


def empty():
    """The empty task: no argument, no result."""
    return None


def empty_item(_item):
    """The empty task for executor.map, which always passes an item."""
    return None


def percentile(sorted_ns, permille):
    """Nearest-rank percentile; integer arithmetic, the same as throughput.c."""
    rank = (len(sorted_ns) * permille + 999) // 1000
    return sorted_ns[max(rank, 1) - 1]


def latency_samples(tasks):
    """Scales with N so that --quick shortens it too (as in throughput.c)."""
    return min(max(tasks // 10, 100), MAX_LATENCY_SAMPLES)


def timed(run):
    """Runs run() and returns (its value, nanoseconds it took)."""
    t0 = time.monotonic_ns()
    value = run()
    return value, time.monotonic_ns() - t0


def rate(count, ns):
    return count * 1e9 / ns if ns > 0 else 0.0


def failed_count(futures):
    """Counts the futures that raised; shows the first one."""
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        print(f"peer_processpool: {len(errors)} task(s) failed, first: {errors[0]!r}",
              file=sys.stderr)
    return len(errors)


def submit_all(executor, tasks):
    """Submits back to back, then one wait, as throughput.c does."""
    futures = [executor.submit(empty) for _ in range(tasks)]
    cf.wait(futures)
    return failed_count(futures)


def map_all(executor, tasks):
    """executor.map raises on the first failed task: that counts as one."""
    try:
        for _ in executor.map(empty_item, range(tasks), chunksize=1):
            pass
    except Exception as exc:  # pylint: disable=broad-except
        print(f"peer_processpool: map failed: {exc!r}", file=sys.stderr)
        return 1
    return 0


def run_throughput(executor, mode, run, tasks, fields):
    failures, ns = timed(lambda: run(executor, tasks))
    print(f"throughput  {fields}  mode={mode}  threads=1  tasks={tasks}"
          f"  seconds={ns / 1e9:.3f}  tasks/s={rate(tasks, ns):.0f}")
    return failures


def run_latency(executor, warmup, samples, fields):
    """One task at a time, timed from submit to settled."""
    ns = []
    failures = 0
    for i in range(warmup + samples):
        t0 = time.monotonic_ns()
        future = executor.submit(empty)
        cf.wait([future])
        took = time.monotonic_ns() - t0
        failures += failed_count([future])
        if i >= warmup:
            ns.append(took)
    ns.sort()
    print(f"latency     {fields}  samples={samples}"
          f"  p50_us={percentile(ns, 500) / 1e3:.1f}"
          f"  p90_us={percentile(ns, 900) / 1e3:.1f}"
          f"  p99_us={percentile(ns, 990) / 1e3:.1f}"
          f"  max_us={ns[-1] / 1e3:.1f}")
    return failures


def positive(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"not a positive count: {text}")
    return value


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--start", choices=["forkserver", "fork"], default="forkserver",
                   help="multiprocessing start method (default forkserver)")
    p.add_argument("--fork", dest="start", action="store_const", const="fork",
                   help="same as --start fork (throughput's option)")
    p.add_argument("-w", dest="workers", type=positive, default=2,
                   help="worker processes (default 2)")
    p.add_argument("-n", dest="tasks", type=positive, default=None,
                   help=f"tasks per throughput case (default {DEFAULT_TASKS})")
    p.add_argument("--quick", action="store_true",
                   help=f"a short run for CI (-n {QUICK_TASKS} unless -n is given)")
    args = p.parse_args()
    if args.tasks is None:
        args.tasks = QUICK_TASKS if args.quick else DEFAULT_TASKS
    return args


def main():
    args = parse_args()
    fields = f"peer={PEER}  start={args.start}"
    samples = latency_samples(args.tasks)
    context = multiprocessing.get_context(args.start)
    print(f"# {PEER}  python={sys.version.split()[0]}  workers={args.workers}"
          f"  start={args.start}  cpus={os.cpu_count()}  tasks={args.tasks}")
    failures = 0
    with cf.ProcessPoolExecutor(max_workers=args.workers, mp_context=context) as ex:
        # Worker start-up is not what case (a) is about (and forkserver
        # starts workers only on demand).
        failures += submit_all(ex, 4 * args.workers)
        for mode, run in (("submit", submit_all), ("map-chunksize1", map_all)):
            failures += run_throughput(ex, mode, run, args.tasks, fields)
        failures += run_latency(ex, samples // 20, samples, fields)
    print(f"stats       {fields}  failed={failures}")
    if failures:
        print("peer_processpool: tasks failed; the figures are void", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
