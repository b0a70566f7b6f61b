"""New-connection load through a port forward: a bounded client and an accept server.

    loadgen.py server --port 7000
    loadgen.py client HOST PORT --count 3000 --seconds 5

The server accepts, writes one byte and closes. The client opens connections one after
the other (connect, read the byte, close) until it has made ``--count`` or ``--seconds``
have passed, whichever comes first, and prints one JSON line: connections, errors,
seconds, rate. Only the first packet of each connection walks the NAT chains, so the
rate shows the per-connection cost of the ruleset. Both run only inside the benchmark's
own namespaces.
"""
import argparse
import json
import socket
import time


def serve(port, backlog=4096):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(backlog)
    while True:
        conn, _addr = srv.accept()
        try:
            conn.sendall(b"x")
        except OSError:
            pass
        conn.close()


def client(host, port, count, seconds, timeout):
    done = errors = 0
    start = time.perf_counter()
    deadline = start + seconds
    while done < count and time.perf_counter() < deadline:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect((host, port))
            if sock.recv(1) == b"x":
                done += 1
            else:
                errors += 1
        except OSError:
            errors += 1
            if errors > max(20, count // 10):
                break  # the path is broken, not slow: stop early
        finally:
            sock.close()
    elapsed = time.perf_counter() - start
    return {"connections": done, "errors": errors, "seconds": round(elapsed, 4),
            "rate": round(done / elapsed, 1) if elapsed else 0.0}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    sub = ap.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("server")
    s.add_argument("--port", type=int, required=True)
    c = sub.add_parser("client")
    c.add_argument("host")
    c.add_argument("port", type=int)
    c.add_argument("--count", type=int, default=3000)
    c.add_argument("--seconds", type=float, default=5.0)
    c.add_argument("--timeout", type=float, default=2.0)
    args = ap.parse_args()
    if args.mode == "server":
        serve(args.port)
    else:
        print(json.dumps(client(args.host, args.port, args.count, args.seconds, args.timeout)))


if __name__ == "__main__":
    main()
