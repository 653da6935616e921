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
from test_ioserver import Q, dev_state, env, wait_good  # noqa: F401 (env: a fixture)


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
    r = env.scadactl(site, "--direct", "write", "U2.W", "7")
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
    r = env.scadactl(site, "--direct", "write", "U2.W", "1")
    assert r.returncode == 1 and "offline" in r.stdout, r.stdout
    ds.ok("normal u2")
    wait_good(srv, ["U2.V"])
    wait_until(lambda: dev_state(env, "u2") == "online", 5, what="u2 online in Redis")


# ------------------------------------------------------------ failover


def devsim_requests(ds, dev):
    import json
    return json.loads(ds.ok("stats %s" % dev)[3:])["devices"][dev]["requests"]


def redis_hash(env, key):
    import redis
    r = redis.Redis(port=env.redis.port, decode_responses=True)
    try:
        return r.hgetall(key)
    finally:
        r.close()


def channel_key(env, ch, io="io1"):
    return "scada:%s:ioserver:%s:channel:%s" % (env.site_name, io, ch)


def test_network_socket_fails_alone_and_recovers(env):
    """One outstation of a network channel replies after its deadline: after
    max_read_timeouts only its socket fails, with an I/O Timeout event and
    key; the others keep their poll rate; without the delay it recovers and
    the alarm clears."""
    base = env.free_ports(3)
    devices = [{"name": "n%d" % i, "address": "127.0.0.1:%d" % (base + i), "servers": ["io1"],
                "scan_ms": 200, "tags": [{"name": "N%d.V" % i, "address": "hr:0",
                                          "sim": {"kind": "const", "initial": 10 + i}}]}
               for i in range(3)]
    io = env.ioserver_cfg(reconnect_min_ms=300, reconnect_max_ms=2000)
    site = env.site([io], [{"name": "net", "type": "network", "standard_reply_delay_ms": 150,
                            "max_read_timeouts": 3, "devices": devices}])
    ds = env.start_devsim(site)
    sub = env.subscribe(io["publish"])
    srv = env.start_ioserver(site, io)
    wait_good(srv, ["N0.V", "N1.V", "N2.V"])
    emark = sub.event_mark()
    ds.ok("delay n1 400")  # every reply 400 ms late: past the 150 ms deadline
    raise_ev = wait_until(lambda: [e for e in sub.events_of(emark)
                                   if e.kind == H.pb.Event.IO_TIMEOUT_RAISE], 10,
                          what="I/O Timeout raised")[0]
    assert raise_ev.channel == "net" and raise_ev.device == "n1", raise_ev
    assert "3 consecutive read timeouts" in raise_ev.reason and raise_ev.state == "failed"
    wait_until(lambda: srv.read(["N1.V"])["N1.V"].quality == Q("BAD_NO_COMM"), 5,
               what="N1.V bad-no-comm")
    key = redis_hash(env, channel_key(env, "net"))
    wait_until(lambda: redis_hash(env, channel_key(env, "net")).get("sockets_failed") == "1", 5,
               what="channel key: one failed socket")
    key = redis_hash(env, channel_key(env, "net"))
    assert key["state"] == "healthy" and key["io_timeout_alarms"] == "1", key
    # The others keep their poll rate (scan 200 ms: 5 requests/s each).
    before = {d: devsim_requests(ds, d) for d in ("n0", "n2")}
    time.sleep(2.0)
    for d in ("n0", "n2"):
        done = devsim_requests(ds, d) - before[d]
        assert done >= 6, (d, done)  # at least 60 % of 10 scans in 2 s
        tag = "N%s.V" % d[1]
        assert srv.read([tag])[tag].quality == Q("GOOD")
    # Only one raise, for n1.
    raises = [e for e in sub.events_of(emark) if e.kind == H.pb.Event.IO_TIMEOUT_RAISE]
    assert {e.device for e in raises} == {"n1"}, raises
    # Fault cleared: the socket recovers, the alarm clears.
    cmark = sub.event_mark()
    ds.ok("normal n1")
    wait_good(srv, ["N1.V"], timeout=15)
    clear = wait_until(lambda: [e for e in sub.events_of(cmark)
                                if e.kind == H.pb.Event.IO_TIMEOUT_CLEAR], 5,
                       what="I/O Timeout cleared")[0]
    assert clear.device == "n1" and clear.channel == "net"
    wait_until(lambda: redis_hash(env, channel_key(env, "net")).get("io_timeout_alarms") == "0",
               5, what="channel key: no alarm")


def test_gateway_channel_fails_reassigns_and_recovers(env):
    """A silent gateway: the whole channel fails at the limit (I/O Timeout),
    is de-assigned and re-assigned once, stays failed while silent (retried
    with back-off), and recovers with the alarm cleared when it answers."""
    port = env.free_ports(1)
    io, site = gateway_site(env, port, standard_reply_delay_ms=150)
    ds = env.start_devsim(site)
    sub = env.subscribe(io["publish"])
    srv = env.start_ioserver(site, io)
    wait_good(srv, ["U1.V", "U2.V", "U3.V"])
    emark = sub.event_mark()
    ds.ok("silent u1,u2,u3")
    raise_ev = wait_until(lambda: [e for e in sub.events_of(emark)
                                   if e.kind == H.pb.Event.IO_TIMEOUT_RAISE], 10,
                          what="I/O Timeout raised")[0]
    assert raise_ev.channel == "gw" and not raise_ev.device, raise_ev
    for tag in ("U1.V", "U2.V", "U3.V"):
        wait_until(lambda: srv.read([tag])[tag].quality == Q("BAD_NO_COMM"), 5,
                   what="%s bad-no-comm" % tag)
    # De-assigned, re-assigned once, then failed while the gateway stays silent.
    states = lambda: [e.state for e in sub.events_of(emark)
                      if e.kind == H.pb.Event.CHANNEL_STATE]
    wait_until(lambda: "failed" in states(), 15, what="channel failed after the re-assign")
    # reassigning (closed) -> reassigned (reopened, on trial) -> failed (still silent)
    assert states()[:3] == ["reassigning", "reassigned", "failed"], states()
    wait_until(lambda: redis_hash(env, channel_key(env, "gw")).get("state") in ("failed",), 5,
               what="channel key failed")
    time.sleep(3)  # still silent: still failed, no second alarm, no second re-assign
    assert states().count("reassigning") == 1, states()
    raises = [e for e in sub.events_of(emark) if e.kind == H.pb.Event.IO_TIMEOUT_RAISE]
    assert len(raises) == 1, raises
    assert redis_hash(env, channel_key(env, "gw"))["io_timeout_alarms"] == "1"
    cmark = sub.event_mark()
    ds.ok("normal u1,u2,u3")
    wait_good(srv, ["U1.V", "U2.V", "U3.V"], timeout=20)
    wait_until(lambda: [e for e in sub.events_of(cmark)
                        if e.kind == H.pb.Event.IO_TIMEOUT_CLEAR], 5, what="alarm cleared")
    wait_until(lambda: redis_hash(env, channel_key(env, "gw")).get("state") == "healthy", 5,
               what="channel key healthy")


def test_intermittent_timeouts_below_the_limit_fail_nothing(env):
    """Every other reply late (one timeout, then a good reply, ...): the
    counter never reaches the limit, nothing fails, no alarm."""
    port = env.free_ports(1)
    # A raw device answering odd requests at once and even ones 300 ms late.
    raw = env.start_raw("alternate-late", port=port)
    devices = [{"name": "r", "address": "127.0.0.1:%d" % port, "servers": ["io1"],
                "scan_ms": 100, "tags": [{"name": "R.V", "address": "hr:0"}]}]
    io = env.ioserver_cfg()
    site = env.site([io], [{"name": "net", "type": "network", "standard_reply_delay_ms": 150,
                            "max_read_timeouts": 2, "devices": devices}])
    sub = env.subscribe(io["publish"])
    emark = sub.event_mark()
    srv = env.start_ioserver(site, io)
    wait_good(srv, ["R.V"])
    time.sleep(4)
    evs = [e for e in sub.events_of(emark)
           if e.kind in (H.pb.Event.IO_TIMEOUT_RAISE, H.pb.Event.CHANNEL_STATE)
           and e.state != "healthy"]
    assert not evs, evs
    st = srv.status()
    assert st["devices_online"] == 1
    assert srv.read(["R.V"])["R.V"].quality == Q("GOOD")
    assert raw.requests >= 10, raw.requests


# ------------------------------------------------------------ I/O log


def iolog_lines(path):
    import os
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [l.rstrip("\n") for l in f if l.endswith("\n")]


def field(line, name):
    for part in line.split():
        if part.startswith(name + "="):
            return part[len(name) + 1:]
    return None


def test_iolog_on_off_and_summary(env):
    """scadactl iolog switches a channel's log at run time; late replies are
    timed; the summary advises raising standard_reply_delay_ms."""
    port = env.free_ports(1)
    devices = [{"name": "p1", "address": "127.0.0.1:%d" % port, "servers": ["io1"],
                "scan_ms": 300, "tags": [{"name": "P1.V", "address": "hr:0"}]}]
    io = env.ioserver_cfg(iolog_dir="logs")
    site = env.site([io], [{"name": "line2", "type": "network", "standard_reply_delay_ms": 200,
                            "max_read_timeouts": 100, "devices": devices}])
    log = str(env.tmp / "logs" / "io1-line2.log")
    ds = env.start_devsim(site)
    srv = env.start_ioserver(site, io)
    wait_good(srv, ["P1.V"])
    time.sleep(0.7)
    assert iolog_lines(log) == []  # off by default
    r = env.scadactl(site, "iolog", "line2", "--summary")
    assert r.returncode == 1 and "no I/O log" in r.stderr, r.stderr
    r = env.scadactl(site, "iolog", "line2", "on")
    assert r.returncode == 0 and "on" in r.stdout, r.stdout + r.stderr
    wait_until(lambda: len(iolog_lines(log)) >= 3, 5, what="I/O log lines")
    ok = iolog_lines(log)[0]
    assert field(ok, "dev") == "p1" and field(ok, "fc") == "3" and ok.endswith(" ok"), ok
    assert field(ok, "deadline") == "200ms", ok
    ds.ok("delay p1 260")  # 60 ms after the deadline
    wait_until(lambda: sum(1 for l in iolog_lines(log) if l.endswith(" timeout")
                           and field(l, "reply") != "none") >= 10, 10,
               what="late replies in the I/O log")
    late = [l for l in iolog_lines(log) if l.endswith(" timeout") and field(l, "reply") != "none"]
    for l in late:
        reply = int(field(l, "reply")[:-2])
        assert 255 <= reply <= 400, l
        assert field(l, "margin") == "%+dms" % (200 - reply), l
    r = env.scadactl(site, "iolog", "line2", "off")
    assert r.returncode == 0
    n = len(iolog_lines(log))
    time.sleep(1)
    assert len(iolog_lines(log)) == n  # off: nothing more
    r = env.scadactl(site, "iolog", "line2", "--summary")
    assert r.returncode == 0, r.stderr
    assert "after the deadline on line2: raise standard_reply_delay_ms from 200 to" in r.stdout, \
        r.stdout
    advised = int(r.stdout.split("from 200 to ")[1].split()[0])
    assert advised >= 260, r.stdout
    # Bad usage: unknown channel, bad word.
    assert env.scadactl(site, "iolog", "nope", "on").returncode == 2
    assert env.scadactl(site, "iolog", "line2", "maybe").returncode == 2


def test_baud_limited_deadline_follows_the_formula(env):
    """On a channel with a link speed the deadline of each request is
    delay + bytes x 8 / baud for the request and the expected reply."""
    port = env.free_ports(2)
    devices = [{"name": "s%d" % i, "address": "127.0.0.1:%d" % (port + i), "servers": ["io1"],
                "scan_ms": 300,
                "tags": [{"name": "S%d.A" % i, "address": "hr:0"},
                         {"name": "S%d.B" % i, "address": "hr:%d" % (n - 1)}]}
               for i, n in enumerate((1, 100))]
    io = env.ioserver_cfg(iolog_dir="logs")
    site = env.site([io], [{"name": "slow", "type": "network", "standard_reply_delay_ms": 200,
                            "baud": 9600, "iolog": True, "max_gap": 125, "devices": devices}])
    log = str(env.tmp / "logs" / "io1-slow.log")
    env.start_devsim(site)
    srv = env.start_ioserver(site, io)
    wait_good(srv, ["S0.A", "S1.B"])
    wait_until(lambda: {field(l, "dev") for l in iolog_lines(log)} == {"s0", "s1"}, 5,
               what="both devices in the I/O log")
    seen = set()
    for l in iolog_lines(log):
        req = int(field(l, "req")[:-1])
        rep = int(field(l, "rep")[:-1])
        count = int(field(l, "count"))
        assert rep == 9 + 2 * count, l
        tx = lambda b: -(-b * 8 * 1000 // 9600)  # ceil(bytes x 8 / baud) in ms
        assert field(l, "deadline") == "%dms" % (200 + tx(req) + tx(rep)), l
        seen.add(count)
    # one register: 200 + 10 + 10; a hundred: 200 + 10 + 175
    assert seen == {1, 100}, seen


# ------------------------------------------------------------ serial


class PtyBus:
    """Two ptys joined by socat: the I/O server opens `io`, devsim `dev`.
    Stopping socat is pulling the cable out (both ends vanish)."""

    def __init__(self, folder):
        self.io = str(folder / "bus-io")
        self.dev = str(folder / "bus-dev")
        self.proc = None

    def start(self):
        import os
        self.proc = subprocess.Popen(
            ["socat", "pty,raw,echo=0,link=" + self.io, "pty,raw,echo=0,link=" + self.dev],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: os.path.exists(self.io) and os.path.exists(self.dev), 5,
                   what="socat ptys")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)
        self.proc = None


def test_serial_channel_end_to_end_and_failover(env):
    """A serial channel over a pty pair to devsim in RTU mode: polling and
    writes work; garbage and CRC errors are counted, never fatal; pulling the
    far end fails the channel (I/O Timeout); bringing it back recovers it."""
    import shutil
    if not shutil.which("socat"):
        import pytest
        pytest.skip("socat is not installed (it makes the pty pair)")
    bus = PtyBus(env.tmp).start()
    try:
        devices = [{"name": "r%d" % u, "unit": u, "servers": ["io1"], "scan_ms": 200,
                    "tags": [{"name": "R%d.V" % u, "address": "hr:0",
                              "sim": {"kind": "const", "initial": 40 + u}},
                             {"name": "R%d.C" % u, "address": "co:0"}]}
                   for u in (1, 2)]
        io = env.ioserver_cfg(reconnect_min_ms=300, reconnect_max_ms=1500)
        site = env.site([io], [{"name": "bus1", "type": "serial", "serial_port": bus.io,
                                "baud": 19200, "parity": "N", "standard_reply_delay_ms": 100,
                                "max_read_timeouts": 3, "devices": devices}])
        ds = env.start_devsim(site, extra=["--serial", "bus1=" + bus.dev])
        sub = env.subscribe(io["publish"])
        srv = env.start_ioserver(site, io)
        got = wait_good(srv, ["R1.V", "R2.V"])
        assert got["R1.V"].number == 41 and got["R2.V"].number == 42
        r = env.scadactl(site, "--direct", "write", "R2.C", "1")
        assert r.returncode == 0, r.stdout + r.stderr
        wait_until(lambda: srv.read(["R2.C"])["R2.C"].number == 1, 5, what="R2.C written")
        wait_until(lambda: redis_hash(env, channel_key(env, "bus1")).get("state") == "healthy",
                   5, what="channel healthy")
        # Garbage on the line: counted, never fatal; the other unit stays good.
        bad0 = srv.status()["bad_frames"]
        ds.ok("garbage r1")
        wait_until(lambda: srv.status()["bad_frames"] > bad0, 10, what="bad frames counted")
        assert srv.alive() and srv.read(["R2.V"])["R2.V"].quality == Q("GOOD")
        ds.ok("normal r1")
        wait_good(srv, ["R1.V", "R2.V"], timeout=15)
        # Pull the cable: the channel fails with an I/O Timeout.
        emark = sub.event_mark()
        bus.stop()
        wait_until(lambda: [e for e in sub.events_of(emark)
                            if e.kind == H.pb.Event.IO_TIMEOUT_RAISE and e.channel == "bus1"],
                   10, what="I/O Timeout on the serial channel")
        for tag in ("R1.V", "R2.V"):
            wait_until(lambda: srv.read([tag])[tag].quality == Q("BAD_NO_COMM"), 5,
                       what="%s bad-no-comm" % tag)
        wait_until(lambda: redis_hash(env, channel_key(env, "bus1")).get("state") == "failed",
                   10, what="channel key failed")
        # Plug it back: devsim reopens its end, the channel recovers, the alarm clears.
        cmark = sub.event_mark()
        bus.start()
        wait_good(srv, ["R1.V", "R2.V"], timeout=20)
        wait_until(lambda: [e for e in sub.events_of(cmark)
                            if e.kind == H.pb.Event.IO_TIMEOUT_CLEAR], 5, what="alarm cleared")
        assert srv.alive()
    finally:
        bus.stop()


# ------------------------------------------------------------ bad site values


def test_bad_channel_values_exit_2(env, bin_dir):
    """Limits of 0 or below, an unknown channel type, serial keys on a TCP
    channel, a serial channel without a speed: a clear message naming file,
    line and key, exit 2, for the I/O server and scadactl alike."""
    import os
    base = {"name": "c", "type": "network", "devices": [
        {"name": "d", "address": "127.0.0.1:1502", "servers": ["io1"],
         "tags": [{"name": "D.V", "address": "hr:0"}]}]}
    serial_dev = [{"name": "d", "unit": 1, "servers": ["io1"],
                   "tags": [{"name": "D.V", "address": "hr:0"}]}]
    cases = [
        (dict(base, max_read_timeouts=0), "max_read_timeouts"),
        (dict(base, max_write_timeouts=-1), "max_write_timeouts"),
        (dict(base, max_read_timeouts=1.5), "max_read_timeouts"),
        (dict(base, type="modem"), "type"),
        (dict(base, parity="E"), "parity"),
        ({"name": "c", "type": "serial", "serial_port": "/dev/ttyS9", "devices": serial_dev},
         "baud"),
        ({"name": "c", "type": "serial", "serial_port": "/dev/ttyS9", "baud": 9600,
          "parity": "X", "devices": serial_dev}, "parity"),
        (dict(base, standard_reply_delay_ms=-5), "standard_reply_delay_ms"),
    ]
    io = env.ioserver_cfg()
    for i, (channel, key) in enumerate(cases):
        site = env.site([io], [channel], filename="bad%d.yaml" % i)
        for argv in ([os.path.join(bin_dir, "scada-ioserver"), "--config", site, "--name", "io1"],
                     [os.path.join(bin_dir, "scadactl"), "--config", site, "status"]):
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            assert r.returncode == 2, (channel, r.stderr)
            msg = r.stderr.strip().splitlines()[-1]
            assert "bad%d.yaml:" % i in msg and key in msg, (key, msg)
