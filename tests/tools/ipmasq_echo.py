#!/usr/bin/env python
"""Tiny TCP/UDP "who am I" server for traffic tests.

Every TCP connection and every UDP datagram is answered with one line:
``<name> <peer address> <peer port>``. A test reads that line to learn which
server it reached and which source address the server saw (masquerade proof).
Runs until killed; one thread per listener, nothing else.
"""
import argparse
import socket
import socketserver
import threading


class _Tcp(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = True


class _Udp(socketserver.ThreadingMixIn, socketserver.UDPServer):
    allow_reuse_address = True
    daemon_threads = True


def _reply(name, addr):
    return ("%s %s %d\n" % (name, addr[0], addr[1])).encode()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--name", default=socket.gethostname())
    ap.add_argument("--bind", default="0.0.0.0")
    ap.add_argument("--tcp", type=int, action="append", default=[], help="TCP port (repeatable)")
    ap.add_argument("--udp", type=int, action="append", default=[], help="UDP port (repeatable)")
    args = ap.parse_args()
    name = args.name

    class TcpHandler(socketserver.BaseRequestHandler):
        def handle(self):
            self.request.sendall(_reply(name, self.client_address))

    class UdpHandler(socketserver.BaseRequestHandler):
        def handle(self):
            self.request[1].sendto(_reply(name, self.client_address), self.client_address)

    servers = [_Tcp((args.bind, p), TcpHandler) for p in args.tcp]
    servers += [_Udp((args.bind, p), UdpHandler) for p in args.udp]
    if not servers:
        ap.error("give at least one --tcp or --udp port")
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
