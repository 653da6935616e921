"""System tests of scada-alarm with the real I/O server, resolver, broker
and scada-devsim. Alarm requests and events are spoken with pyzmq and Python
protobuf from proto/ (an independent implementation of the alarm protocol).

- test_io_timeout_*: a channel failing on consecutive timeouts raises its
  I/O Timeout alarm within one ping time and clears it when it recovers.
- test_deadband_*: a value oscillating around a limit inside the deadband
  raises one alarm, not a stream.
- test_restart_*: an acknowledgement survives kill -9; an alarm raised while
  the service was down is raised on start.
- test_flood_*: 10,000 tag alarms within a second: all journaled in order,
  the service answers, its memory stays bounded.
- test_errors_*: unknown ids, bad durations, a corrupt journal.
"""
import os
import signal
import subprocess
import threading
import time


import scada_helpers as H
from scada_helpers import wait_until

PING_MS = 500
COMM_DELAY_S = 1.0  # comm_delay_ms of the sites that set it


class Alarms:
    """The alarm service's control socket and its event stream."""

    def __init__(self, control, publish):
        import zmq
        self.ctx = zmq.Context()
        self.control = control
        self.events = []
        self.lock = threading.Lock()
        self._stop = False
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"A")
        self.sub.connect(publish)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self._id = 0

    def _run(self):
        import zmq
        while not self._stop:
            if self.sub.poll(50):
                frames = self.sub.recv_multipart()
                ev = H.pb.AlarmEvent()
                ev.ParseFromString(frames[1])
                with self.lock:
                    self.events.append((time.monotonic(), ev))

    def of(self, alarm, since=0.0, kind=None):
        with self.lock:
            return [e for t, e in self.events if e.alarm == alarm and t >= since
                    and (kind is None or e.kind == kind)]

    def request(self, timeout=5.0, raw=None, **fields):
        import zmq
        self._id += 1
        s = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(self.control)
        try:
            s.send(raw if raw is not None else
                   H.pb.AlarmRequest(id=self._id, **fields).SerializeToString())
            if not s.poll(int(timeout * 1000)):
                raise TimeoutError("no answer from the alarm service")
            rep = H.pb.AlarmReply()
            rep.ParseFromString(s.recv())
            return rep
        finally:
            s.close()

    def active(self, **filters):
        rep = self.request(kind=H.pb.AlarmRequest.LIST, **filters)
        assert rep.status == H.pb.AlarmReply.OK, rep.error
        return {a.alarm: a for a in rep.alarms}

    def stop(self):
        self._stop = True
        self.thread.join(2)
        self.sub.close(0)
        self.ctx.term()


def K(name):
    return H.pb.AlarmEvent.Kind.Value(name)


def S(name):
    return H.pb.AlarmState.Value(name)


class Site:
    """devsim + resolver + io1 + broker b1 (+ the alarm service) on a
    network channel of devices with alarm tags, or a gateway channel."""

    def __init__(self, env, tags_per_dev=None, ndev=1, gateway=False, scan_ms=200,
                 journal=None, start=True, **alarm_kw):
        self.env = env
        port = env.free_ports(ndev)
        self.ports = port
        io = env.ioserver_cfg("io1", always_scan=False, reconnect_min_ms=300)
        self.io_cfg = io
        devices = []
        for d in range(ndev):
            tags = tags_per_dev(d) if tags_per_dev else []
            dev = {"name": "d%d" % (d + 1), "servers": ["io1"], "scan_ms": scan_ms,
                   "tags": tags}
            if gateway:
                dev["unit"] = d + 1
            else:
                dev["address"] = "127.0.0.1:%d" % (port + d)
            devices.append(dev)
        if gateway:
            ch = {"name": "gw", "type": "tcp", "address": "127.0.0.1:%d" % port,
                  "standard_reply_delay_ms": 150, "max_read_timeouts": 2, "devices": devices}
        else:
            ch = {"name": "net", "type": "network", "standard_reply_delay_ms": 150,
                  "max_read_timeouts": 2, "devices": devices}
        top = env.pubsub_top()
        self.alarm = env.alarm_top(journal=journal, **alarm_kw)
        self.resolver_ep = top["resolver"]["endpoint"]
        self.broker_ep = top["brokers"][0]["endpoint"]
        self.site = env.site([io], [ch], ping_time_ms=PING_MS, alarm=self.alarm, **top)
        if start:
            self.devsim = env.start_devsim(self.site)
            self.resolver = env.start_resolver(self.site, self.resolver_ep)
            self.io = env.start_ioserver(self.site, io)
            self.broker = env.start_broker(self.site, "b1", self.broker_ep)
            self.svc = self.start_alarm()

    def start_alarm(self):
        self.svc = self.env.start_alarm(self.site, self.alarm["control"])
        return self.svc

    def client(self):
        return self.env.own(Alarms(self.alarm["control"], self.alarm["publish"]))


def level_tag(name, addr="hr:0", initial=20, **alarms):
    a = {"hi": 50, "deadband": 5}
    a.update(alarms)
    return {"name": name, "address": addr, "type": "uint16",
            "sim": {"kind": "const", "initial": initial}, "alarms": a}


# --------------------------------------------------------------- I/O timeout


def test_io_timeout_alarm_within_one_ping_and_clears(env):
    s = Site(env, ndev=2, gateway=True,
             tags_per_dev=lambda d: [level_tag("U%d.L" % (d + 1))])
    a = s.client()
    alarm = "io1.gw.IO_TIMEOUT"
    wait_until(lambda: s.env.redis.client.hget("scada:%s:ioserver:io1:channel:gw"
                                               % env.site_name, "state") == "healthy",
               10, what="channel healthy")
    assert alarm not in a.active()
    # The gateway stops answering in time: 2 consecutive timeouts fail the channel.
    for u in ("d1", "d2"):
        s.devsim.ok("delay %s 1000" % u)
    t_raise = None
    ev = wait_until(lambda: a.of(alarm, kind=K("RAISE")), 10, what="I/O Timeout alarm")
    t_raise = [t for t, e in a.events if e.alarm == alarm and e.kind == K("RAISE")][0]
    # Within one ping time of the I/O server's IO_TIMEOUT_RAISE event: the
    # I/O server's log stamps it; compare with the alarm's own timestamp.
    log = s.io.log_text()
    assert "I/O Timeout on" in log
    assert ev[0].state == S("UNACK_ACTIVE") and ev[0].priority == 1
    act = a.active()
    assert alarm in act and act[alarm].area == "comm"
    for u in ("d1", "d2"):
        s.devsim.ok("normal %s" % u)
    wait_until(lambda: a.of(alarm, kind=K("CLEAR")), 15, what="I/O Timeout alarm cleared")
    cleared = a.of(alarm, kind=K("CLEAR"))[0]
    assert cleared.state == S("UNACK_CLEARED")
    assert t_raise is not None


def test_io_timeout_alarm_latency_from_event(env):
    """The alarm follows the I/O server's event within one ping time."""
    s = Site(env, ndev=1, gateway=True, tags_per_dev=lambda d: [level_tag("U1.L")])
    a = s.client()
    sub = env.subscribe(s.io_cfg["publish"])
    wait_until(lambda: a.request(kind=H.pb.AlarmRequest.LIST).status == H.pb.AlarmReply.OK,
               5, what="alarm service answers")
    time.sleep(1.0)
    mark = sub.event_mark()
    s.devsim.ok("delay d1 1000")
    wait_until(lambda: [e for e in sub.events_of(mark)
                        if e.kind == H.pb.Event.IO_TIMEOUT_RAISE], 10, what="IO_TIMEOUT_RAISE")
    ev = [e for e in sub.events_of(mark) if e.kind == H.pb.Event.IO_TIMEOUT_RAISE][0]
    got = wait_until(lambda: a.of("io1.gw.IO_TIMEOUT", kind=K("RAISE")), 5, what="alarm")
    assert 0 <= got[0].ts_ms - ev.ts_ms <= PING_MS, (got[0].ts_ms, ev.ts_ms)


# ------------------------------------------------------------------ deadband


def test_deadband_oscillation_raises_one_alarm(env):
    s = Site(env, tags_per_dev=lambda d: [level_tag("T.L", hi=50, deadband=5)], scan_ms=100)
    a = s.client()
    wait_until(lambda: a.request(kind=H.pb.AlarmRequest.LIST).status == H.pb.AlarmReply.OK,
               5, what="alarm service answers")
    time.sleep(0.5)
    t0 = time.monotonic()
    # Cross the limit, then wander inside the deadband (46..54) for a while.
    for v in [55, 49, 52, 47, 53, 48, 51, 46, 54, 49, 52]:
        s.devsim.ok("set T.L %d" % v)
        time.sleep(0.25)
    raises = a.of("T.L.HI", t0, K("RAISE"))
    clears = a.of("T.L.HI", t0, K("CLEAR"))
    assert len(raises) == 1 and not clears, (raises, clears)
    # Below the deadband: it clears, once.
    s.devsim.ok("set T.L 40")
    wait_until(lambda: a.of("T.L.HI", t0, K("CLEAR")), 3, what="clear below the deadband")
    time.sleep(0.5)
    assert len(a.of("T.L.HI", t0, K("CLEAR"))) == 1
    assert len(a.of("T.L.HI", t0, K("RAISE"))) == 1


# ------------------------------------------------------------------- restart


def test_restart_keeps_ack_and_raises_what_happened_meanwhile(env):
    s = Site(env, ndev=2, tags_per_dev=lambda d: [level_tag("D%d.L" % (d + 1))],
             comm_delay_ms=int(COMM_DELAY_S * 1000))
    a = s.client()
    wait_until(lambda: a.request(kind=H.pb.AlarmRequest.LIST).status == H.pb.AlarmReply.OK,
               5, what="alarm service answers")
    s.devsim.ok("set D1.L 70")
    wait_until(lambda: "D1.L.HI" in a.active(), 5, what="D1.L.HI active")
    rep = a.request(kind=H.pb.AlarmRequest.ACK, alarms=["D1.L.HI"], user="olga",
                    comment="seen, filling stopped")
    assert rep.status == H.pb.AlarmReply.OK, rep.error
    assert rep.alarms[0].state == S("ACK_ACTIVE") and rep.alarms[0].user == "olga"
    # kill -9, and meanwhile device d2 dies.
    s.svc.send(signal.SIGKILL)
    s.svc.wait(5)
    s.devsim.ok("refuse d2")
    time.sleep(2.0)
    s.start_alarm()
    # The acknowledged alarm is still acknowledged (not raised again)...
    act = wait_until(lambda: (lambda x: x if "D1.L.HI" in x and "io1.d2.COMM" in x else None)(
        a.active()), 10, what="alarms after the restart")
    assert act["D1.L.HI"].state == S("ACK_ACTIVE"), act["D1.L.HI"]
    assert act["D1.L.HI"].user == "olga"
    # ...and what happened while it was down is raised now.
    assert act["io1.d2.COMM"].state == S("UNACK_ACTIVE")
    # D2.L has no good value, but io1.d2.COMM already says why: no TAG.COMM.
    time.sleep(COMM_DELAY_S + 2 * PING_MS / 1000.0)
    assert "D2.L.COMM" not in a.active()
    # A cleared alarm does not come back active: clear D1.L, ack, restart.
    s.devsim.ok("set D1.L 10")
    wait_until(lambda: "D1.L.HI" not in a.active(), 5, what="D1.L.HI cleared to normal")
    s.svc.send(signal.SIGKILL)
    s.svc.wait(5)
    s.start_alarm()
    time.sleep(1.5)
    assert "D1.L.HI" not in a.active()
    # History from the journal: the whole story, in order.
    h = a.request(kind=H.pb.AlarmRequest.HISTORY, alarms=["D1.L.HI"])
    kinds = [e.kind for e in h.alarms]
    assert kinds == [K("RAISE"), K("ACK"), K("CLEAR")], kinds
    assert [e.seq for e in h.alarms] == sorted(e.seq for e in h.alarms)


# ----------------------------------------------------------- one cause, one


def test_tag_comm_waits_and_is_not_raised_for_a_dead_device(env):
    """A dead device raises its DEVICE.COMM, not a TAG.COMM per tag; a tag
    that is bad while its device answers (every read refused) raises TAG.COMM,
    but only after comm_delay_ms; a bad spell shorter than that raises
    nothing."""
    delay_ms = 2000
    s = Site(env, ndev=2, comm_delay_ms=delay_ms,
             tags_per_dev=lambda d: [level_tag("D%d.L" % (d + 1)),
                                     level_tag("D%d.M" % (d + 1), "hr:2")])
    a = s.client()
    wait_until(lambda: a.request(kind=H.pb.AlarmRequest.LIST).status == H.pb.AlarmReply.OK,
               5, what="alarm service answers")
    time.sleep(1.0)
    t0 = time.monotonic()
    # d1 dies: one alarm for the device, none for its two tags.
    s.devsim.ok("refuse d1")
    wait_until(lambda: "io1.d1.COMM" in a.active(), 5, what="io1.d1.COMM")
    time.sleep(delay_ms / 1000.0 + 2 * PING_MS / 1000.0 + 0.5)
    act = a.active()
    assert "D1.L.COMM" not in act and "D1.M.COMM" not in act, sorted(act)
    # d2 answers every read with an exception: online, but no good value.
    s.devsim.ok("exception d2 2")
    t_bad = time.monotonic()
    wait_until(lambda: a.of("D2.L.COMM", t0, K("RAISE")), delay_ms / 1000.0 + 4,
               what="D2.L.COMM after the delay")
    raised_after = [t for t, e in a.events if e.alarm == "D2.L.COMM"
                    and e.kind == K("RAISE")][0] - t_bad
    assert raised_after >= delay_ms / 1000.0 - 0.3, raised_after
    assert "io1.d2.COMM" not in a.active()
    # Good again: it clears. A bad spell shorter than the delay raises nothing.
    s.devsim.ok("normal d2")
    wait_until(lambda: a.of("D2.L.COMM", t0, K("CLEAR")), 5, what="D2.L.COMM cleared")
    t1 = time.monotonic()
    s.devsim.ok("exception d2 2")
    time.sleep(delay_ms / 1000.0 / 3)
    s.devsim.ok("normal d2")
    time.sleep(delay_ms / 1000.0 + 1.0)
    assert not a.of("D2.M.COMM", t1, K("RAISE")) and not a.of("D2.L.COMM", t1, K("RAISE"))


# --------------------------------------------------------------------- flood


def test_flood_10000_alarms_journaled_in_order(env):
    ndev, per = 100, 100
    # Every tag ramps 0..100 in step; all cross hi=50 within one scan.
    def tags(d):
        return [{"name": "F%03d.T%03d" % (d, t), "address": "hr:%d" % t, "type": "uint16",
                 "sim": {"kind": "ramp", "min": 0, "max": 100, "period_ms": 8000},
                 "alarms": {"hi": 50, "comm": False}} for t in range(per)]
    s = Site(env, ndev=ndev, tags_per_dev=tags, scan_ms=500, sync="batch", start=False,
             device_alarms=False)
    env.start_devsim(s.site)
    env.start_resolver(s.site, s.resolver_ep)
    s.io = env.start_ioserver(s.site, s.io_cfg)
    env.start_broker(s.site, "b1", s.broker_ep)
    svc = s.start_alarm()
    a = s.client()

    def rss_kb():
        with open("/proc/%d/status" % svc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    # Wait for the flood (the ramps pass 50 every 8 s), answering LIST meanwhile.
    slowest = 0.0
    deadline = time.monotonic() + 30
    rss_before = rss_kb()
    while time.monotonic() < deadline:
        t = time.monotonic()
        rep = a.request(kind=H.pb.AlarmRequest.LIST, max_priority=1000, timeout=5)
        slowest = max(slowest, time.monotonic() - t)
        if len([x for x in rep.alarms if x.state == S("UNACK_ACTIVE")]) == ndev * per:
            break
        time.sleep(0.2)
    raises = {}
    with a.lock:
        for _, e in a.events:
            if e.kind == K("RAISE") and e.alarm.endswith(".HI"):
                raises.setdefault(e.alarm, e)
    assert len(raises) == ndev * per, len(raises)
    first = [e.ts_ms for e in raises.values()]
    assert max(first) - min(first) <= 1500, "raised within about one scan"
    assert slowest < 2.0, "LIST answered during the flood in %.2f s" % slowest
    rss_after = rss_kb()
    # The journal holds every one of them, in seq order.
    h = a.request(kind=H.pb.AlarmRequest.HISTORY, limit=100000, timeout=20)
    seqs = [e.seq for e in h.alarms]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    journaled = {e.alarm for e in h.alarms if e.kind == K("RAISE")}
    assert set(raises) <= journaled
    # Bounded memory: another full cycle of raise and clear does not grow it much.
    time.sleep(8.5)
    rss_later = rss_kb()
    assert rss_later - rss_after < 20000, (rss_before, rss_after, rss_later)


# -------------------------------------------------------------------- errors


def test_errors_are_clear_and_lose_nothing(env):
    s = Site(env, tags_per_dev=lambda d: [level_tag("E.L")])
    a = s.client()
    wait_until(lambda: a.request(kind=H.pb.AlarmRequest.LIST).status == H.pb.AlarmReply.OK,
               5, what="alarm service answers")
    s.devsim.ok("set E.L 80")
    wait_until(lambda: "E.L.HI" in a.active(), 5, what="E.L.HI")
    rep = a.request(kind=H.pb.AlarmRequest.ACK, alarms=["NO.SUCH.HI", "E.L.HI"])
    assert rep.status == H.pb.AlarmReply.ERROR and "no such alarm: NO.SUCH.HI" in rep.error
    assert a.active()["E.L.HI"].state == S("UNACK_ACTIVE"), "nothing done on an error"
    rep = a.request(kind=H.pb.AlarmRequest.SHELVE, alarms=["E.L.HI"], duration_ms=0)
    assert rep.status == H.pb.AlarmReply.ERROR and "duration" in rep.error
    rep = a.request(raw=b"\x01\x02garbage")
    assert rep.status == H.pb.AlarmReply.ERROR and "malformed" in rep.error
    # scadactl: the same through the command line.
    r = env.scadactl(s.site, "ack", "NO.SUCH.HI")
    assert r.returncode == 1 and "no such alarm" in r.stderr, r
    r = env.scadactl(s.site, "shelve", "E.L.HI", "soon")
    assert r.returncode == 2 and "not a duration" in r.stderr, r
    r = env.scadactl(s.site, "shelve", "--user", "ivan", "E.L.HI", "90s")
    assert r.returncode == 0, r.stderr
    assert a.active()["E.L.HI"].shelved
    r = env.scadactl(s.site, "--json", "alarms")
    assert r.returncode == 0 and '"alarm":"E.L.HI"' in r.stdout and '"shelved":true' in r.stdout
    r = env.scadactl(s.site, "ack", "E.L.HI")
    assert r.returncode == 0, r.stderr
    r = env.scadactl(s.site, "alarms", "--history")
    assert r.returncode == 0 and "shelve" in r.stdout and "ack" in r.stdout, r.stdout
    # A corrupt journal: the service says what and where, keeps the records
    # before the damage, and goes on.
    s.svc.stop()
    path = s.alarm["journal"]
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(size - 3)
        f.write(b"\xff\xff\xff")
    s.start_alarm()
    wait_until(lambda: a.request(kind=H.pb.AlarmRequest.LIST).status == H.pb.AlarmReply.OK,
               5, what="alarm service answers after the damage")
    log = s.svc.log_text()
    assert "journal" in log and ("CRC" in log or "truncated" in log or "cut" in log), log
    h = a.request(kind=H.pb.AlarmRequest.HISTORY, alarms=["E.L.HI"])
    assert [e.kind for e in h.alarms][:2] == [K("RAISE"), K("SHELVE")]


def test_errors_damage_inside_the_journal_is_moved_aside(env):
    s = Site(env, tags_per_dev=lambda d: [level_tag("M.L")])
    a = s.client()
    wait_until(lambda: a.request(kind=H.pb.AlarmRequest.LIST).status == H.pb.AlarmReply.OK,
               5, what="alarm service answers")
    for v in (80, 10, 80, 10, 80):  # five events of M.L.HI
        s.devsim.ok("set M.L %d" % v)
        time.sleep(0.4)
    wait_until(lambda: len(a.of("M.L.HI")) >= 5, 5, what="five events")
    s.svc.stop()
    path = s.alarm["journal"]
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF  # a flipped byte in a middle record
    open(path, "wb").write(bytes(data))
    s.start_alarm()
    wait_until(lambda: a.request(kind=H.pb.AlarmRequest.LIST).status == H.pb.AlarmReply.OK,
               5, what="alarm service answers after the repair")
    log = s.svc.log_text()
    assert "repaired" in log, log
    assert os.path.exists(path + ".damaged"), "the damaged file is kept"
    h = a.request(kind=H.pb.AlarmRequest.HISTORY, alarms=["M.L.HI"])
    assert h.status == H.pb.AlarmReply.OK
    assert 1 <= len(h.alarms) < 5, [e.kind for e in h.alarms]
    # Numbering goes on after the kept records; new events are journaled.
    s.devsim.ok("set M.L 10")
    time.sleep(0.6)
    s.devsim.ok("set M.L 90")
    wait_until(lambda: len(a.request(kind=H.pb.AlarmRequest.HISTORY,
                                     alarms=["M.L.HI"]).alarms) > len(h.alarms), 5,
               what="new events journaled")


def test_ack_all_area_filters_and_redis(env):
    def tags(d):
        return [level_tag("Z%d.A" % d, "hr:0", area="north", priority=2),
                level_tag("Z%d.B" % d, "hr:1", area="south", priority=4)]
    s = Site(env, ndev=1, tags_per_dev=tags)
    a = s.client()
    wait_until(lambda: a.request(kind=H.pb.AlarmRequest.LIST).status == H.pb.AlarmReply.OK,
               5, what="alarm service answers")
    s.devsim.ok("set Z0.A 90")
    s.devsim.ok("set Z0.B 90")
    wait_until(lambda: {"Z0.A.HI", "Z0.B.HI"} <= set(a.active()), 5, what="both raised")
    assert set(a.active(area="north")) == {"Z0.A.HI"}
    assert set(a.active(max_priority=3)) == {"Z0.A.HI"}
    r = env.scadactl(s.site, "--json", "alarms", "--area", "south")
    assert r.returncode == 0 and '"alarm":"Z0.B.HI"' in r.stdout and "Z0.A" not in r.stdout, r
    r = env.scadactl(s.site, "ack", "--all-area", "north", "--comment", "round 3")
    assert r.returncode == 0, r.stderr
    act = a.active()
    assert act["Z0.A.HI"].state == S("ACK_ACTIVE") and act["Z0.A.HI"].comment == "round 3"
    assert act["Z0.B.HI"].state == S("UNACK_ACTIVE")
    # Redis mirrors it: the active list, the event stream, the service's hash.
    rd = env.redis.client
    key = "scada:%s:alarm" % env.site_name
    wait_until(lambda: (rd.hget(key + ":active", "Z0.A.HI") or "").startswith("ACK_ACTIVE"), 5,
               what="active list in Redis")
    assert (rd.hget(key + ":active", "Z0.B.HI") or "").startswith("UNACK_ACTIVE")
    entries = rd.xrange(key + ":events")
    assert [e[1]["event"] for e in entries if e[1]["alarm"] == "Z0.A.HI"] == ["RAISE", "ACK"]
    wait_until(lambda: rd.hget(key, "unacked") == "1", 5, what="counts in Redis")
    assert rd.hget(key, "state") == "running"
    # scadactl status: the alarm service and its unacknowledged alarms first.
    out = env.scadactl(s.site, "status").stdout
    assert "alarm               running" in out and "unacknowledged 1" in out, out
    assert out.index("Z0.B.HI") < out.index("Z0.A.HI"), out


def test_ioserver_that_stops_answering_raises_its_comm_alarm(env):
    s = Site(env, tags_per_dev=lambda d: [level_tag("Q.L")])
    a = s.client()
    wait_until(lambda: a.request(kind=H.pb.AlarmRequest.LIST).status == H.pb.AlarmReply.OK,
               5, what="alarm service answers")
    time.sleep(1.0)
    assert "io1.COMM" not in a.active()
    t0 = time.monotonic()
    s.io.send(signal.SIGKILL)
    wait_until(lambda: a.of("io1.COMM", t0, K("RAISE")), 4 * PING_MS / 1000.0 + 2,
               what="io1.COMM raised")
    raised = [t for t, e in a.events if e.alarm == "io1.COMM" and e.kind == K("RAISE")][-1]
    assert raised - t0 <= 4 * PING_MS / 1000.0 + 0.5, raised - t0
    assert a.active()["io1.COMM"].area == "comm"
    s.io.stop()
    s.io = env.start_ioserver(s.site, s.io_cfg)
    wait_until(lambda: a.of("io1.COMM", t0, K("CLEAR")), 5, what="io1.COMM cleared")
