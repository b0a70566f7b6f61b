"""ipmasq_echo on IPv6: the same server, listening on ``::`` instead of 0.0.0.0.

The echo tool's server classes are IPv4 only; switching their address family is
all an IPv6 listener needs, so the reply format stays identical.
"""
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import ipmasq_echo  # noqa: E402  pylint: disable=wrong-import-position

ipmasq_echo._Tcp.address_family = socket.AF_INET6  # pylint: disable=protected-access
ipmasq_echo._Udp.address_family = socket.AF_INET6  # pylint: disable=protected-access

if __name__ == "__main__":
    if "--bind" not in sys.argv:
        sys.argv += ["--bind", "::"]
    ipmasq_echo.main()
