#!/usr/bin/env python3
"""Round trip between two processes over loopback TCP, in microseconds: one pair on the same
CPU, one on different CPUs (`cross` needs 2 CPUs). Every file-system call on a mount is a chain
of such hops (application -> kernel -> mount -> tracker / node -> back), and on a virtual machine
waking a process on another vCPU can cost ten times a same-CPU hop, and varies from minute to
minute; bench.sh records it beside each system's figures so runs can be told apart.
Usage: bench_hop.py same|cross [seconds]"""
import os, socket, sys, time

def round_trip_us(server_cpu, client_cpu, seconds):
    srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
    pid = os.fork()
    if pid == 0:
        os.sched_setaffinity(0, {server_cpu})
        c, _ = srv.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while (d := c.recv(64)):
            c.sendall(d)
        os._exit(0)
    os.sched_setaffinity(0, {client_cpu})
    s = socket.create_connection(srv.getsockname()); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        s.sendall(b"x"); s.recv(64); n += 1
    elapsed = time.perf_counter() - t0
    s.close(); os.waitpid(pid, 0)
    return elapsed / n * 1e6

if __name__ == "__main__":
    cpus = sorted(os.sched_getaffinity(0))
    other = cpus[1] if len(cpus) > 1 else cpus[0]
    mode, seconds = sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    print(round(round_trip_us(cpus[0], cpus[0] if mode == "same" else other, seconds), 1))
