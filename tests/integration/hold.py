"""Hold TCP connections open, to count them (connection limits).

    hold.py server PORT SECONDS           accept and keep every connection, for SECONDS
    hold.py client HOST PORT COUNT        open COUNT connections one after the other and
                                          print one word each: ok, refused or timeout;
                                          then print "held" and keep them open until
                                          standard input closes (at most 60 s)

Everything is bounded: connects time out after 3 s, the server stops after SECONDS.
"""
import select
import socket
import sys
import time


def server(port, seconds):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", port))
    listener.listen(64)
    held, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        if select.select([listener], [], [], 0.5)[0]:
            held.append(listener.accept()[0])


def client(host, port, count):
    held = []
    for _attempt in range(count):
        conn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        conn.settimeout(3)
        try:
            conn.connect((host, port))
            held.append(conn)
            print("ok", flush=True)
        except ConnectionRefusedError:
            print("refused", flush=True)
        except OSError:
            print("timeout", flush=True)
    print("held", flush=True)
    select.select([sys.stdin], [], [], 60)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(int(sys.argv[2]), float(sys.argv[3]))
    else:
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
