"""Module configs the tests apply, and a normaliser to compare them with gathered state."""
import copy
import json

from netlab import LAN_NET, LAN_NET6, LAN_SERVER

WAN_IF = "wan0"

MASQUERADE = [{"source": LAN_NET, "out_interface": WAN_IF, "comment": "lan-out"}]
MASQUERADE6 = [{"source": LAN_NET6, "out_interface": WAN_IF, "comment": "lan6-out"}]

PORT_FORWARDS = [
    {"in_interface": WAN_IF, "protocol": "tcp", "port": 8080, "to_address": LAN_SERVER, "to_port": 80,
     "comment": "web"},
    {"in_interface": WAN_IF, "protocol": "udp", "port": 5353, "to_address": LAN_SERVER, "to_port": 53},
    {"in_interface": WAN_IF, "protocol": "tcp", "port": "9000-9002", "to_address": LAN_SERVER},
]

FORWARD = [
    {"in_interface": WAN_IF, "ct_state": ["established", "related"], "action": "accept"},
    {"out_interface": WAN_IF, "source": LAN_NET, "action": "accept"},
    {"in_interface": WAN_IF, "action": "drop"},
]


def full():
    """Masquerade + port forwards + default-deny forward rules: a typical gateway."""
    return copy.deepcopy({"masquerade": MASQUERADE, "port_forwards": PORT_FORWARDS, "forward": FORWARD})


KINDS = ("masquerade", "snat", "port_forwards", "forward", "helpers")
ORDERED_KINDS = ("forward",)


def _entry(kind, entry):
    out = {}
    for key, value in entry.items():
        if value is None or value is False or value in ("", [], {}):
            continue
        if key in ("port", "to_port") and isinstance(value, str) and value.isdigit():
            value = int(value)
        if key in ("protocol", "action") and isinstance(value, str):
            value = value.lower()
        if key == "ct_state":
            value = sorted(v.lower() for v in value)
        out[key] = value
    if kind == "port_forwards" and out.get("to_port") == out.get("port"):
        out.pop("to_port", None)  # to_port defaults to port
    return out


def normalise(config):
    """Drop empty/default fields and order identity-keyed kinds, so equal rules compare equal."""
    config = config or {}
    out = {}
    for kind in KINDS:
        entries = [_entry(kind, e) for e in (config.get(kind) or [])]
        if kind not in ORDERED_KINDS:
            entries.sort(key=lambda e: json.dumps(e, sort_keys=True))
        out[kind] = entries
    return out
