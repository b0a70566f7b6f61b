#!/usr/bin/env python
"""Client for ipmasq_echo: connect once (TCP) or send one datagram (UDP) and print the reply.

Exit status 0 with the server's line on stdout, or 1 with the error on stderr.
Every attempt is bounded by --timeout, so a dropped packet fails fast.
"""
import argparse
import socket
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("proto", choices=["tcp", "udp"])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--timeout", type=float, default=2.0)
    ap.add_argument("--source-port", type=int, default=0)
    args = ap.parse_args()
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    kind = socket.SOCK_STREAM if args.proto == "tcp" else socket.SOCK_DGRAM
    try:
        with socket.socket(family, kind) as s:
            s.settimeout(args.timeout)
            if args.source_port:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", args.source_port))
            if args.proto == "tcp":
                s.connect((args.host, args.port))
                data = s.recv(512)
            else:
                s.sendto(b"hello\n", (args.host, args.port))
                data = s.recvfrom(512)[0]
    except OSError as exc:
        print("%s %s:%d: %s" % (args.proto, args.host, args.port, exc), file=sys.stderr)
        return 1
    sys.stdout.write(data.decode(errors="replace"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
