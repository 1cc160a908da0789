#!/usr/bin/env python3
"""Tracker protocol load: get_paths, and create_open + PUT + create_close pairs, over N
connections (one process each, so the client's GIL is not the bottleneck). Prints JSON."""
import http.client, json, multiprocessing as mp, socket, sys, time, urllib.parse

def call(sock, buf, line):
    sock.sendall(line.encode())
    while b"\r\n" not in buf[0]:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("tracker closed the connection")
        buf[0] += chunk
    reply, buf[0] = buf[0].split(b"\r\n", 1)
    if not reply.startswith(b"OK"):
        raise RuntimeError(reply.decode())
    return dict(urllib.parse.parse_qsl(reply[3:].decode()))

def worker(args):
    kind, tracker, domain, seconds, wid = args
    host, port = tracker.rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = [b""]
    conns = {}
    n = 0
    end = time.time() + seconds
    while time.time() < end:
        if kind == "get_paths":
            call(s, buf, "get_paths domain=%s&key=bench/k%d&noverify=1\r\n" % (domain, n % 100))
        else:
            key = "bench/w%d-%d" % (wid, n)
            r = call(s, buf, "create_open domain=%s&key=%s&class=one\r\n" % (domain, key))
            url = urllib.parse.urlsplit(r["path"])
            c = conns.get(url.netloc)
            if c is None:
                c = conns[url.netloc] = http.client.HTTPConnection(url.netloc)
            c.request("PUT", url.path, body=b"x")
            resp = c.getresponse(); resp.read()
            if resp.status != 200:
                raise RuntimeError("PUT %s: %d" % (r["path"], resp.status))
            call(s, buf, "create_close domain=%s&key=%s&fid=%s&devid=%s&path=%s&size=1\r\n"
                 % (domain, key, r["fid"], r["devid"], urllib.parse.quote(r["path"], safe="")))
        n += 1
    return n

if __name__ == "__main__":
    tracker, domain, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    for kind in ("get_paths", "create_pair"):
        for conns in (1, 4):
            with mp.Pool(conns) as pool:
                t0 = time.time()
                total = sum(pool.map(worker, [(kind, tracker, domain, seconds, i) for i in range(conns)]))
                dt = time.time() - t0
            print(json.dumps({"name": "tracker_%s_%dconn" % (kind, conns), "value": round(total / seconds), "unit": "ops/s"}), flush=True)
