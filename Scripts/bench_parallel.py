#!/usr/bin/env python3
"""bench_parallel.py DIR [WRITERS] [FILES] [SIZE] - small files created by several writers at
once (as `cp -r` jobs, untar in parallel or many clients do), each in a directory of its own:
prints files per second over all writers, from the start to a syncfs after the last close.
fsbench.sh's small_create is one writer; this is the same loop (O_EXCL create, one write,
close) in WRITERS processes of FILES files of SIZE bytes each. The files stay (the caller
removes DIR/par.*) so that deleting them cannot slow the next workload."""
import ctypes, multiprocessing as mp, os, sys, time

def writer(root, index, files, size, ready, go):
    d = os.path.join(root, "par.%d" % index)
    os.makedirs(d, exist_ok=True)
    block = bytearray(os.urandom(size))
    ready.wait()
    go.wait()
    for i in range(files):
        block[0:8] = i.to_bytes(8, "little")
        fd = os.open(os.path.join(d, "f%05d" % i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, block)
        os.close(fd)

if __name__ == "__main__":
    root = sys.argv[1]
    given = [int(a) for a in sys.argv[2:5]]
    writers, files, size = given + [8, 250, 4096][len(given):]
    ready, go = mp.Barrier(writers + 1), mp.Event()
    procs = [mp.Process(target=writer, args=(root, k, files, size, ready, go)) for k in range(writers)]
    for p in procs: p.start()
    ready.wait()
    t0 = time.perf_counter()
    go.set()
    for p in procs: p.join()
    if any(p.exitcode != 0 for p in procs):
        sys.exit("bench_parallel: a writer failed")
    fd = os.open(root, os.O_RDONLY)
    ctypes.CDLL(None, use_errno=True).syncfs(fd)
    os.close(fd)
    print(round(writers * files / (time.perf_counter() - t0)))
