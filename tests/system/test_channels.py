"""System tests of channel types other than `network`: the real I/O server,
devsim and scadactl, with Python protobuf and redis-py on the other side.

- test_gateway_units_share_one_connection: a `tcp` channel (one gateway, three
  units behind it) is polled over ONE TCP connection; every unit's values
  arrive; writes reach the right unit.
- test_gateway_unit_offline_alone: a unit the gateway cannot reach (gateway
  exception 0x0B) goes offline alone; the others stay good; it comes back.
"""
import subprocess
import time

import scada_helpers as H
from scada_helpers import wait_until
from test_ioserver import Q, dev_state, env, pb, wait_good  # noqa: F401 (fixtures)


def gateway_site(env, port, units=(1, 2, 3), **channel):
    devices = [{"name": "u%d" % u, "unit": u, "servers": ["io1"], "scan_ms": 200,
                "tags": [{"name": "U%d.V" % u, "address": "hr:0",
                          "sim": {"kind": "const", "initial": 100 + u}},
                         {"name": "U%d.W" % u, "address": "hr:1"}]}
               for u in units]
    ch = {"name": "gw", "type": "tcp", "address": "127.0.0.1:%d" % port,
          "standard_reply_delay_ms": 200, "max_read_timeouts": 3, "devices": devices}
    ch.update(channel)
    io = env.ioserver_cfg(reconnect_min_ms=500)
    return io, env.site([io], [ch])


def established_to(port):
    """Established TCP connections from this host to 127.0.0.1:port."""
    out = subprocess.run(["ss", "-Htn", "state", "established", "dst", "127.0.0.1:%d" % port],
                         capture_output=True, text=True).stdout
    return len([l for l in out.splitlines() if l.strip()])


def test_gateway_units_share_one_connection(env):
    port = env.free_ports(1)
    io, site = gateway_site(env, port)
    env.start_devsim(site)
    srv = env.start_ioserver(site, io)
    got = wait_good(srv, ["U1.V", "U2.V", "U3.V"])
    assert {t: v.number for t, v in got.items()} == {"U1.V": 101, "U2.V": 102, "U3.V": 103}
    assert established_to(port) == 1
    for u in (1, 2, 3):
        wait_until(lambda: dev_state(env, "u%d" % u) == "online", 5, what="u%d online" % u)
    # A write to one unit lands there and nowhere else.
    r = env.scadactl(site, "write", "U2.W", "7")
    assert r.returncode == 0, r.stdout + r.stderr
    wait_until(lambda: srv.read(["U2.W"])["U2.W"].number == 7, 5, what="U2.W = 7")
    vals = srv.read(["U1.W", "U3.W"])
    assert vals["U1.W"].number == 0 and vals["U3.W"].number == 0


def test_gateway_unit_offline_alone(env):
    port = env.free_ports(1)
    io, site = gateway_site(env, port)
    ds = env.start_devsim(site)
    srv = env.start_ioserver(site, io)
    wait_good(srv, ["U1.V", "U2.V", "U3.V"])
    ds.ok("refuse u2")  # the gateway answers exception 0x0B for unit 2
    wait_until(lambda: srv.read(["U2.V"])["U2.V"].quality == Q("BAD_NO_COMM"), 5,
               what="U2.V bad-no-comm")
    v = srv.read(["U2.V"])["U2.V"]
    assert v.number == 102 and "gateway" in v.reason, v
    wait_until(lambda: dev_state(env, "u2") == "offline", 5, what="u2 offline in Redis")
    # The others keep being polled over the same connection.
    time.sleep(1.0)
    for tag in ("U1.V", "U3.V"):
        assert srv.read([tag])[tag].quality == Q("GOOD")
    assert established_to(port) == 1
    # A write to the unreachable unit is refused with the reason.
    r = env.scadactl(site, "write", "U2.W", "1")
    assert r.returncode == 1 and "offline" in r.stdout, r.stdout
    ds.ok("normal u2")
    wait_good(srv, ["U2.V"])
    wait_until(lambda: dev_state(env, "u2") == "online", 5, what="u2 online in Redis")
