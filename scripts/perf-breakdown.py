#!/usr/bin/env python3
"""Summarises `perf script` output (with call graphs) read on stdin.

Prints, for each named group of frames, the share of samples whose stack
contains a frame of that group (groups overlap: a sample in the object
server's MD5 counts for both), then the functions that were on the CPU
most often. Extra groups may be given as NAME=REGEX arguments.

    perf script -i perf.data | scripts/perf-breakdown.py [NAME=REGEX ...]
"""
import collections
import re
import sys

GROUPS = [
    ("proxy", r"apus_proxy::"),
    ("object server", r"apus_server::object::"),
    ("container server", r"apus_server::container::"),
    ("account server", r"apus_server::account::"),
    ("disk files (apus_diskfile)", r"apus_diskfile::"),
    ("SQLite", r"sqlite3|rusqlite::"),
    ("MD5", r"md5|Md5"),
    ("allocator", r"^_?rjem_|malloc|^free$|cfree|realloc|_int_free"),
    ("memcpy/memmove", r"memmove|memcpy"),
    ("hyper HTTP/1", r"^hyper::"),
    ("upload connections (expect)", r"apus_http::expect::"),
    ("connect(2)", r"__libc_connect|__sys_connect"),
    ("close(2)", r"^__close$|__x64_sys_close"),
    ("accept(2)", r"__sys_accept4|do_accept"),
    ("open(2)", r"do_sys_open|__x64_sys_openat"),
    ("rename(2)", r"renameat|rename$"),
    ("fsync/fdatasync", r"do_fsync|__x64_sys_fdatasync|__x64_sys_fsync"),
    ("blocking-pool hand-offs", r"blocking::pool::Spawner::spawn_task|spawn_blocking"),
    ("futex wake/wait", r"__x64_sys_futex"),
    ("epoll", r"epoll_wait|do_epoll"),
    ("socket send", r"tcp_sendmsg"),
    ("socket receive", r"tcp_recvmsg"),
    ("logging (tracing)", r"^tracing|tracing_subscriber"),
]


def stacks(lines):
    """Yields each sample's frames, leaf first."""
    frames = []
    for line in lines:
        if not line.strip():
            if frames:
                yield frames
            frames = []
            continue
        if line[0] in " \t":
            parts = line.strip().split(" ", 1)
            if len(parts) == 2:
                sym = re.sub(r" \([^)]*\)$", "", parts[1])
                sym = re.sub(r"\+0x[0-9a-f]+$", "", sym)
                frames.append(sym)
    if frames:
        yield frames


def main():
    groups = list(GROUPS)
    for arg in sys.argv[1:]:
        name, _, pattern = arg.partition("=")
        groups.append((name, pattern))
    compiled = [(name, re.compile(p)) for name, p in groups]
    hits = collections.Counter()
    leaves = collections.Counter()
    total = 0
    for frames in stacks(sys.stdin):
        total += 1
        leaves[frames[0]] += 1
        for name, rx in compiled:
            if any(rx.search(f) for f in frames):
                hits[name] += 1
    if total == 0:
        print("no samples")
        return 1
    print(f"{total} samples")
    print("share of samples with a frame in:")
    for name, _ in groups:
        print(f"  {100 * hits[name] / total:5.1f}%  {name}")
    print("on the CPU most often:")
    for sym, n in leaves.most_common(15):
        print(f"  {100 * n / total:5.1f}%  {sym[:100]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
