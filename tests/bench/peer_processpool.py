#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The Python peer of workerpool's benchmarks: the same cases on
concurrent.futures.ProcessPoolExecutor (which workerpool sets out to be the
C answer to) and multiprocessing.Pool.

--bench throughput (the default) is the peer of tests/bench/throughput and
measures, on one executor (2 workers, forkserver start unless told):
  a. empty-task throughput, 1 submitting thread, N tasks: submit all then
     wait (mode=submit, what throughput.c does), and executor.map with
     chunksize=1 (mode=map-chunksize1, Python's own streaming path);
  b. round-trip latency: submit one empty task, wait for it, repeat;
     N/10 samples (at most 20000) after a twentieth as many warm-up rounds,
     nearest-rank percentiles computed exactly as throughput.c does.

The other benches are the peers of the programs of the same name, run by
run-peers.sh:
  tiny        N tasks taking the task number as argument, each case on a
              fresh pool: ProcessPoolExecutor.submit with at most WINDOW
              (256) outstanding, released as they finish (a semaphore the
              done-callback releases); ProcessPoolExecutor.map with
              chunksize=64; multiprocessing.Pool.apply_async with the same
              window.  tasks/s, and CPU us per task of the whole pool's
              life: resource.getrusage of RUSAGE_SELF + RUSAGE_CHILDREN
              after the pool has been shut down and its workers reaped.
              That needs the workers to be our children, so this bench
              starts them with fork (Python 3.11's default on Linux)
              unless --start says otherwise: under forkserver the workers
              are the fork server's children, and it outlives the pool,
              so their CPU is missing (the figure is then marked so).
  roundtrip   the latency case of throughput alone, -n samples.
  headofline  one task busy-waiting LONG_MS first, then SHORTS tasks
              busy-waiting SHORT_US each; the short tasks' submit ->
              settled latency (done-callback time) and the total time.

Why: a figure for workerpool alone says little; the same cases run by the
best-known peers on the same machine at the same time say how far ahead or
behind it is.  Accepts the C programs' options so the scripts can hand both
the same arguments.  Every figure also prints as "RESULT key value unit".
Standard library only.  Exits non-zero if any task failed.
"""

import argparse
import concurrent.futures as cf
import multiprocessing
import os
import resource
import sys
import threading
import time

PEER = "python-ProcessPoolExecutor"
DEFAULT_TASKS = 200000
QUICK_TASKS = 20000
MAX_LATENCY_SAMPLES = 20000
DEFAULT_WINDOW = 256
MAP_CHUNKSIZE = 64
TINY_START = "fork"  # see the docstring: CPU accounting needs the workers as children
DEFAULT_ROUNDTRIP_SAMPLES = 20000
QUICK_ROUNDTRIP_SAMPLES = 2000
DEFAULT_LONG_MS = 2000
DEFAULT_SHORTS = 2000
DEFAULT_SHORT_US = 100


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
    """One task at a time, timed from submit to settled.  Returns the
    failures and the sorted samples (ns)."""
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
    return failures, ns


# ------------------------------------------------ machine-readable figures

def result(key, value, unit):
    print(f"RESULT {key} {value:.3f} {unit}")


def latency_results(key, sorted_ns):
    """RESULT KEY_p50 / _p99 / _max in us, as benchutil.c prints them."""
    for name, value in (("p50", percentile(sorted_ns, 500)),
                        ("p99", percentile(sorted_ns, 990)), ("max", sorted_ns[-1])):
        result(f"{key}_{name}", value / 1e3, "us")


def cpu_seconds():
    """User + system CPU of this process and of its reaped children."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def spin_us(us):
    """Busy-waits (no sleep) for us microseconds of wall time."""
    end = time.monotonic_ns() + us * 1000
    while time.monotonic_ns() < end:
        pass


# ---------------------------------------------------------- bench: tiny

class Window:
    """At most `size` tasks outstanding; a finished task frees its place
    and counts its error, from whatever thread reports it."""

    def __init__(self, size):
        self.size = size
        self.room = threading.BoundedSemaphore(size)
        self.errors = []

    def enter(self):
        self.room.acquire()

    def done(self, error=None):
        if error is not None:
            self.errors.append(error)
        self.room.release()

    def drain(self):
        """Waits for every task outstanding; returns the failures."""
        for _ in range(self.size):
            self.room.acquire()
        if self.errors:
            print(f"peer_processpool: {len(self.errors)} task(s) failed, first:"
                  f" {self.errors[0]!r}", file=sys.stderr)
        return len(self.errors)


def tiny_ppe_submit(executor, tasks, window):
    w = Window(window)
    for i in range(tasks):
        w.enter()
        executor.submit(empty_item, i).add_done_callback(lambda f: w.done(f.exception()))
    return w.drain()


def tiny_ppe_map(executor, tasks, _window):
    try:
        for _ in executor.map(empty_item, range(tasks), chunksize=MAP_CHUNKSIZE):
            pass
    except Exception as exc:  # pylint: disable=broad-except
        print(f"peer_processpool: map failed: {exc!r}", file=sys.stderr)
        return 1
    return 0


def tiny_mp_apply_async(pool, tasks, window):
    w = Window(window)
    for i in range(tasks):
        w.enter()
        pool.apply_async(empty_item, (i,), callback=lambda _: w.done(),
                         error_callback=w.done)
    return w.drain()


def ppe_pool(args):
    """A ProcessPoolExecutor and how to warm it and close it."""
    context = multiprocessing.get_context(args.start)
    ex = cf.ProcessPoolExecutor(max_workers=args.workers, mp_context=context)
    return ex, lambda: submit_all(ex, 4 * args.workers), lambda: ex.shutdown(wait=True)


def mp_pool(args):
    """A multiprocessing.Pool; close + join reaps its workers."""
    pool = multiprocessing.get_context(args.start).Pool(args.workers)

    def close():
        pool.close()
        pool.join()

    def warm():
        pool.map(empty_item, range(4 * args.workers))
        return 0

    return pool, warm, close


def run_tiny_case(args, name, make_pool, run):
    cpu0 = cpu_seconds()
    pool, warm, close = make_pool(args)
    failures = warm()
    failures_run, ns = timed(lambda: run(pool, args.tasks, args.window))
    close()
    cpu_us = (cpu_seconds() - cpu0) * 1e6 / args.tasks
    note = "" if args.start == "fork" else "  (workers' CPU not included: forkserver)"
    print(f"{name:<16} tasks={args.tasks}  seconds={ns / 1e9:.3f}"
          f"  tasks/s={rate(args.tasks, ns):<8.0f}  cpu_us/task={cpu_us:.2f}{note}")
    result(f"py_tiny_{name}_tasks_per_s", rate(args.tasks, ns), "1/s")
    result(f"py_tiny_{name}_cpu_us_per_task", cpu_us, "us")
    return failures + failures_run


def bench_tiny(args):
    print(f"# tiny peers  python={sys.version.split()[0]}  workers={args.workers}"
          f"  start={args.start}  cpus={os.cpu_count()}  tasks={args.tasks}"
          f"  window={args.window}  map chunksize={MAP_CHUNKSIZE}")
    return sum(run_tiny_case(args, name, make_pool, run) for name, make_pool, run in (
        ("ppe_submit", ppe_pool, tiny_ppe_submit),
        ("ppe_map64", ppe_pool, tiny_ppe_map),
        ("mp_apply_async", mp_pool, tiny_mp_apply_async)))


# ----------------------------------------------------- bench: roundtrip

def bench_roundtrip(args):
    fields = f"peer={PEER}  start={args.start}"
    print(f"# roundtrip peer  {fields}  python={sys.version.split()[0]}"
          f"  workers={args.workers}  samples={args.tasks}")
    ex, warm, close = ppe_pool(args)
    failures = warm()
    more, ns = run_latency(ex, args.tasks // 20, args.tasks, fields)
    close()
    latency_results("py_roundtrip_ppe", ns)
    return failures + more


# ---------------------------------------------------- bench: headofline

def bench_headofline(args):
    print(f"# headofline peer  peer={PEER}  start={args.start}  workers={args.workers}"
          f"  long_ms={args.long_ms}  shorts={args.shorts}  short_us={args.short_us}")
    n = args.shorts + 1  # [0] is the long task
    submitted, settled = [0] * n, [0] * n

    def stamp(i):
        return lambda _f: settled.__setitem__(i, time.monotonic_ns())

    ex, warm, close = ppe_pool(args)
    failures = warm()
    futures = []
    for i in range(n):
        submitted[i] = time.monotonic_ns()
        future = ex.submit(spin_us, args.long_ms * 1000 if i == 0 else args.short_us)
        future.add_done_callback(stamp(i))
        futures.append(future)
    cf.wait(futures)
    close()  # every done-callback has run once the executor has shut down
    failures += failed_count(futures)
    lat = sorted(settled[i] - submitted[i] for i in range(1, n))
    behind = sum(settled[i] > settled[0] for i in range(1, n))
    shorts_s = (max(settled[1:]) - submitted[0]) / 1e9
    total_s = (max(settled) - submitted[0]) / 1e9
    print(f"short tasks  samples={args.shorts}  p50_us={percentile(lat, 500) / 1e3:.1f}"
          f"  p99_us={percentile(lat, 990) / 1e3:.1f}  max_us={lat[-1] / 1e3:.1f}")
    print(f"short tasks settled after the long one: {behind} of {args.shorts}")
    print(f"last short task settled at {shorts_s:.3f} s, everything at {total_s:.3f} s")
    latency_results("py_headofline_short", lat)
    result("py_headofline_shorts_behind_long", behind, "tasks")
    result("py_headofline_shorts_done", shorts_s, "s")
    result("py_headofline_total", total_s, "s")
    return failures


# ---------------------------------------------------- bench: throughput

def bench_throughput(args):
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
        failures += run_latency(ex, samples // 20, samples, fields)[0]
    print(f"stats       {fields}  failed={failures}")
    return failures


# ------------------------------------------------------------------ main

BENCHES = {"throughput": bench_throughput, "tiny": bench_tiny,
           "roundtrip": bench_roundtrip, "headofline": bench_headofline}


def positive(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"not a positive count: {text}")
    return value


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bench", choices=sorted(BENCHES), default="throughput",
                   help="which benchmark's peer to run (default throughput)")
    p.add_argument("--start", choices=["forkserver", "fork"], default=None,
                   help=f"multiprocessing start method (default forkserver;"
                        f" {TINY_START} for --bench tiny)")
    p.add_argument("--fork", dest="start", action="store_const", const="fork",
                   help="same as --start fork (throughput's option)")
    p.add_argument("-w", dest="workers", type=positive, default=2,
                   help="worker processes (default 2)")
    p.add_argument("-n", dest="tasks", type=positive, default=None,
                   help=f"tasks per throughput case (default {DEFAULT_TASKS}),"
                        f" or round trip samples (default {DEFAULT_ROUNDTRIP_SAMPLES})")
    p.add_argument("--quick", action="store_true",
                   help=f"a short run for CI (-n {QUICK_TASKS}, round trip"
                        f" {QUICK_ROUNDTRIP_SAMPLES}, unless -n is given)")
    p.add_argument("-W", dest="window", type=positive, default=DEFAULT_WINDOW,
                   help=f"tiny: tasks outstanding (default {DEFAULT_WINDOW})")
    p.add_argument("-l", dest="long_ms", type=positive, default=DEFAULT_LONG_MS,
                   help=f"headofline: the long task, ms (default {DEFAULT_LONG_MS})")
    p.add_argument("-s", dest="shorts", type=positive, default=DEFAULT_SHORTS,
                   help=f"headofline: short tasks (default {DEFAULT_SHORTS})")
    p.add_argument("-u", dest="short_us", type=positive, default=DEFAULT_SHORT_US,
                   help=f"headofline: each short task, us (default {DEFAULT_SHORT_US})")
    args = p.parse_args()
    if args.start is None:
        args.start = TINY_START if args.bench == "tiny" else "forkserver"
    if args.tasks is None and args.bench == "roundtrip":
        args.tasks = QUICK_ROUNDTRIP_SAMPLES if args.quick else DEFAULT_ROUNDTRIP_SAMPLES
    elif args.tasks is None:
        args.tasks = QUICK_TASKS if args.quick else DEFAULT_TASKS
    return args


def main():
    args = parse_args()
    failures = BENCHES[args.bench](args)
    if failures:
        print("peer_processpool: tasks failed; the figures are void", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
