"""System tests of scada-resolver: the real binary on real sockets, each test
with its own redis-server.

I/O servers and brokers are played by pyzmq DEALERs speaking the protocol of
proto/scada.proto ("Resolver") with Python code that protoc generates at
session start: an independent implementation of every message the resolver
reads and writes.

- test_full_table_*: REGISTER then HELLO gives the whole table, in site order.
- test_failover_*: the primary stops heartbeating; the delta to the standby
  arrives within 2 x ping_time_ms; fail-back says previous_usable.
- test_unit_offline_*: a unit offline at one I/O server moves only it.
- test_resolve_*: a batch of known and unknown names.
- test_reregister_*: unknown incarnations, unknown peers, unknown I/O servers.
- test_restart_*: kill -9 and restart: everyone is asked to register again
  and the table comes back the same; Redis keys expire meanwhile.
- test_malformed_*: garbage is answered with ERROR, counted, rate-limited in
  the log, and the resolver keeps serving.
- test_bad_site_*, test_cli_*, test_bind_*: exit codes and messages.
- test_signal_*: clean stop, state stopped.
- test_with_real_ioserver: scada-ioserver registers its devices.
"""
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

import scada_helpers as H
from scada_helpers import wait_until

PING_MS = 500   # the failover bound is measured with this ping time
FAST_MS = 200   # other tests: faster


# ------------------------------------------------------------------ fixtures


@pytest.fixture
def env(pb, tmp_path, bin_dir, free_ports):
    """A private redis-server and a registry that stops every process,
    thread and socket the test starts, whatever happens."""
    e = H.Env(tmp_path, bin_dir, free_ports)
    try:
        e.start_redis()
        yield e
    finally:
        procs = [o for o in e._owned if isinstance(o, H.Proc)]
        errors = e.cleanup()
        for p in procs:  # shown by pytest when the test failed
            print("----- %s (%s)\n%s" % (p.name, p.log_path, p.log_tail(40)))
        assert not errors, errors


# --------------------------------------------------------------- fake peers

_incarnations = iter(range(1000, 1 << 30))


class Peer:
    """A DEALER connected to the resolver, with a thread that receives every
    message into `inbox` (time, ResolverMsg) and sends HEARTBEAT every
    ping_ms while `beating`. Subclasses react to messages in on_msg().
    The socket is used under a lock, by one thread at a time."""

    def __init__(self, endpoint, name, ping_ms, incarnation=None):
        import zmq
        self.zmq = zmq
        self.name = name
        self.ping_ms = ping_ms
        self.incarnation = incarnation or next(_incarnations)
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RECONNECT_IVL, 50)
        self.sock.connect(endpoint)
        self.lock = threading.RLock()
        self.inbox = []
        self.beating = False
        self.last_beat = None  # monotonic time of the last HEARTBEAT sent
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def msg(self, kind, **fields):
        m = H.pb.ResolverMsg(kind=kind, **fields)
        if kind != H.pb.ResolverMsg.RESOLVE:
            m.name = self.name
            m.incarnation = self.incarnation
        return m

    def send(self, m):
        self.send_raw([m.SerializeToString()])

    def send_raw(self, frames):
        with self.lock:
            self.sock.send_multipart(frames)

    def _run(self):
        next_beat = time.monotonic()
        while not self._stop.is_set():
            with self.lock:
                while self.sock.poll(0):
                    frames = self.sock.recv_multipart()
                    m = H.pb.ResolverMsg()
                    assert len(frames) == 1, frames
                    m.ParseFromString(frames[0])
                    self.inbox.append((time.monotonic(), m))
                    self.on_msg(m)
                if self.beating and time.monotonic() >= next_beat:
                    self.send(self.msg(H.pb.ResolverMsg.HEARTBEAT))
                    self.last_beat = time.monotonic()
                    next_beat = self.last_beat + self.ping_ms / 1000.0
            time.sleep(0.005)

    def on_msg(self, m):
        pass

    def mark(self):
        with self.lock:
            return len(self.inbox)

    def got(self, kind, since=0):
        with self.lock:
            return [m for _, m in self.inbox[since:] if m.kind == kind]

    def got_timed(self, kind, since=0):
        with self.lock:
            return [(t, m) for t, m in self.inbox[since:] if m.kind == kind]

    def wait(self, kind, since=0, timeout=3.0, pred=lambda m: True, what=None):
        """First message of `kind` after `since` matching pred."""
        def find():
            for m in self.got(kind, since):
                if pred(m):
                    return m
            return None
        return wait_until(find, timeout, interval=0.01,
                          what=what or "%s at %s" % (H.pb.ResolverMsg.Kind.Name(kind), self.name))

    def stop(self):
        self._stop.set()
        self.thread.join(5)
        with self.lock:
            self.sock.close()
        self.ctx.term()


class FakeIo(Peer):
    """An I/O server: REGISTER with its offers, UNIT_STATE, HEARTBEAT; it
    registers again when asked (auto_register)."""

    def __init__(self, endpoint, name, ping_ms, offers, auto_register=True):
        self.offers = dict(offers)  # device -> (priority, online)
        self.auto_register = auto_register
        self.publish = "tcp://127.0.0.1:1%s1" % name[-1]
        self.control = "tcp://127.0.0.1:1%s2" % name[-1]
        super().__init__(endpoint, name, ping_ms)

    def register(self, new_incarnation=False):
        if new_incarnation:
            self.incarnation = next(_incarnations)
        m = self.msg(H.pb.ResolverMsg.REGISTER, publish=self.publish, control=self.control)
        for dev, (prio, online) in self.offers.items():
            m.offers.add(device=dev, priority=prio, online=online)
        self.send(m)

    def unit_state(self, dev, online):
        with self.lock:
            prio = self.offers[dev][0]
            self.offers[dev] = (prio, online)
            m = self.msg(H.pb.ResolverMsg.UNIT_STATE)
            m.offers.add(device=dev, priority=prio, online=online)
            self.send(m)

    def on_msg(self, m):
        if m.kind == H.pb.ResolverMsg.REREGISTER and self.auto_register:
            self.register()


class FakeBroker(Peer):
    """A broker: HELLO (answered with the full table), HEARTBEAT, RESOLVE;
    keeps `table` (device -> BestOffer) from the full table and the deltas;
    says HELLO again when asked (auto_hello)."""

    def __init__(self, endpoint, name, ping_ms, auto_hello=True):
        self.table = {}
        self.auto_hello = auto_hello
        self._rid = 0
        super().__init__(endpoint, name, ping_ms)

    def on_msg(self, m):
        if m.kind == H.pb.ResolverMsg.BEST_OFFERS:
            if m.full:
                self.table = {}
            for b in m.best:
                self.table[b.device] = b
        elif m.kind == H.pb.ResolverMsg.REREGISTER and self.auto_hello:
            self.send(self.msg(H.pb.ResolverMsg.HELLO))

    def hello(self, timeout=3.0):
        """HELLO; returns the full BEST_OFFERS that answers it."""
        since = self.mark()
        self.send(self.msg(H.pb.ResolverMsg.HELLO))
        return self.wait(H.pb.ResolverMsg.BEST_OFFERS, since, timeout, pred=lambda m: m.full,
                         what="full table at %s" % self.name)

    def resolve(self, names, timeout=3.0):
        with self.lock:
            self._rid += 1
            rid = self._rid
        since = self.mark()
        m = H.pb.ResolverMsg(kind=H.pb.ResolverMsg.RESOLVE, id=rid, name=self.name)
        m.names.extend(names)
        self.send(m)
        return self.wait(H.pb.ResolverMsg.RESOLVED, since, timeout, pred=lambda r: r.id == rid)

    def deltas(self, since=0):
        return [(t, m) for t, m in self.got_timed(H.pb.ResolverMsg.BEST_OFFERS, since)
                if not m.full]


# ---------------------------------------------------------------- site files


def tag(name, addr="hr:0"):
    bits = addr.split(":")[0] in ("co", "di")
    return {"name": name, "address": addr, "type": "bool" if bits else "uint16"}


def make_site(env, devices, ios=("io1", "io2"), ping_ms=FAST_MS, filename="site.yaml"):
    """A site with `devices`: [(name, [(io, priority), ...], [tags])], one
    network channel, I/O servers `ios`; returns (path, resolver endpoint)."""
    base = env.free_ports(len(devices))
    devs = []
    for i, (name, servers, tags) in enumerate(devices):
        devs.append({"name": name, "address": "127.0.0.1:%d" % (base + i),
                     "servers": [{"ioserver": s, "priority": p} for s, p in servers],
                     "tags": tags})
    top = env.pubsub_top(brokers=())
    del top["brokers"]
    path = env.site([env.ioserver_cfg(n) for n in ios],
                    [{"name": "line1", "type": "network", "devices": devs}],
                    filename=filename, ping_time_ms=ping_ms, **top)
    return path, top["resolver"]["endpoint"]


def std_site(env, ping_ms=FAST_MS):
    """plc1 on io1 (1) and io2 (2); plc2 on io1 (1) and io2 (2); plc3 only on io2."""
    return make_site(env, [
        ("plc1", [("io1", 1), ("io2", 2)], [tag("P1.LEVEL", "hr:0"), tag("P1.RUN", "co:0")]),
        ("plc2", [("io1", 1), ("io2", 2)], [tag("P2.TEMP", "ir:3")]),
        ("plc3", [("io2", 1)], [tag("P3.FLOW", "hr:7"), tag("P3.ALARM", "di:2")]),
    ], ping_ms=ping_ms)


def rkey(env, suffix=""):
    return "scada:%s:resolver%s" % (env.site_name, suffix)


def peer(env, cls, *args, **kw):
    return env.own(cls(*args, **kw))


def best_of(table):
    """device -> (ioserver or None, publish, control)"""
    return {d: (b.ioserver if b.HasField("ioserver") else None,
                b.publish if b.HasField("publish") else None,
                b.control if b.HasField("control") else None) for d, b in table.items()}


def redis_int(env, field):
    v = env.redis.client.hget(rkey(env), field)
    return int(v) if v is not None else None


# --------------------------------------------------------------------- tests


def test_full_table_after_registration(env, pb):
    site, ep = std_site(env)
    res = env.start_resolver(site, ep)
    io1 = peer(env, FakeIo, ep, "io1", FAST_MS, {"plc1": (1, True), "plc2": (1, True)})
    io2 = peer(env, FakeIo, ep, "io2", FAST_MS,
               {"plc1": (2, True), "plc2": (2, True), "plc3": (1, False)})
    io1.beating = io2.beating = True
    io1.register()
    io2.register()
    # the resolver has seen both once Redis says so
    wait_until(lambda: redis_int(env, "ioservers_alive") == 2, 5, what="2 I/O servers alive")
    br = peer(env, FakeBroker, ep, "b1", FAST_MS)
    full = br.hello()
    assert full.full
    assert [b.device for b in full.best] == ["plc1", "plc2", "plc3"]  # site order
    t = {b.device: b for b in full.best}
    for dev in ("plc1", "plc2"):
        assert t[dev].ioserver == "io1"
        assert t[dev].publish == io1.publish and t[dev].control == io1.control
        assert t[dev].reason == "io1 registered"
    # plc3 is offline at its only I/O server: no offer, and why
    assert not t["plc3"].HasField("ioserver")
    assert not t["plc3"].HasField("publish")
    assert t["plc3"].reason
    # Redis: the three keys, with a TTL of 3 ping times
    wait_until(lambda: env.redis.hgetall(rkey(env, ":offers")) ==
               {"plc1": "io1", "plc2": "io1", "plc3": ""}, 3, what="offers hash")
    assert env.redis.hgetall(rkey(env, ":ioservers")) == {"io1": "alive", "io2": "alive"}
    h = env.redis.hgetall(rkey(env))
    for f in ("state", "pid", "started_ms", "ioservers_alive", "ioservers_known", "brokers",
              "devices", "devices_without_offer", "resolves", "names_resolved", "malformed"):
        assert f in h, (f, h)
    wait_until(lambda: env.redis.client.hget(rkey(env), "brokers") == "1", 2, what="brokers 1")
    h = env.redis.hgetall(rkey(env))
    assert h["state"] == "running" and int(h["pid"]) == res.pid
    assert h["devices"] == "3" and h["devices_without_offer"] == "1"
    assert h["ioservers_known"] == "2" and h["malformed"] == "0"
    for k in (rkey(env), rkey(env, ":offers"), rkey(env, ":ioservers")):
        ttl = env.redis.client.pttl(k)
        assert 0 < ttl <= 3 * FAST_MS, (k, ttl)
    # a broker heartbeat is answered with the resolver's
    since = br.mark()
    br.beating = True
    hb = br.wait(pb.ResolverMsg.HEARTBEAT, since)
    assert hb.HasField("incarnation")


def test_failover_within_two_ping_times_and_failback(env, pb):
    site, ep = make_site(env, [("plc1", [("io1", 1), ("io2", 2)], [tag("T1")])],
                         ping_ms=PING_MS)
    env.start_resolver(site, ep)
    io1 = peer(env, FakeIo, ep, "io1", PING_MS, {"plc1": (1, True)})
    io2 = peer(env, FakeIo, ep, "io2", PING_MS, {"plc1": (2, True)})
    io1.beating = io2.beating = True
    io1.register()
    io2.register()
    br = peer(env, FakeBroker, ep, "b1", PING_MS)
    br.beating = True
    wait_until(lambda: redis_int(env, "ioservers_alive") == 2, 5, what="2 alive")
    assert br.hello().best[0].ioserver == "io1"
    # Run a while: heartbeats keep io1 best, no delta at all.
    since = br.mark()
    time.sleep(3 * PING_MS / 1000)
    assert br.deltas(since) == []
    # io1 stops heartbeating.
    with io1.lock:
        io1.beating = False
        t_last = io1.last_beat
    d = br.wait(pb.ResolverMsg.BEST_OFFERS, since, timeout=4 * PING_MS / 1000,
                pred=lambda m: not m.full, what="failover delta")
    t_delta = next(t for t, m in br.deltas(since) if m is d)
    elapsed_ms = (t_delta - t_last) * 1000
    assert len(d.best) == 1
    b = d.best[0]
    assert b.device == "plc1" and b.ioserver == "io2"
    assert b.publish == io2.publish and b.control == io2.control
    assert b.reason == "io1 stopped heartbeating"
    assert not b.previous_usable
    # noticed after 1.5 and within 2 ping times of its last heartbeat
    assert 1.5 * PING_MS - 50 <= elapsed_ms <= 2 * PING_MS, elapsed_ms
    wait_until(lambda: env.redis.client.hget(rkey(env, ":ioservers"), "io1") == "dead", 2,
               what="io1 dead in Redis")
    assert env.redis.client.hget(rkey(env, ":offers"), "plc1") == "io2"
    # io1 restarts: new incarnation, unit online: fail-back, io2 still usable.
    since = br.mark()
    io1.register(new_incarnation=True)
    io1.beating = True
    d = br.wait(pb.ResolverMsg.BEST_OFFERS, since, pred=lambda m: not m.full,
                what="fail-back delta")
    b = d.best[0]
    assert b.device == "plc1" and b.ioserver == "io1" and b.publish == io1.publish
    assert b.reason == "io1 registered"
    assert b.previous_usable
    wait_until(lambda: env.redis.client.hget(rkey(env, ":ioservers"), "io1") == "alive", 2,
               what="io1 alive in Redis")
    assert br.table["plc1"].ioserver == "io1"


def test_unit_offline_moves_only_that_device(env, pb):
    site, ep = std_site(env)
    env.start_resolver(site, ep)
    io1 = peer(env, FakeIo, ep, "io1", FAST_MS, {"plc1": (1, True), "plc2": (1, True)})
    io2 = peer(env, FakeIo, ep, "io2", FAST_MS,
               {"plc1": (2, True), "plc2": (2, True), "plc3": (1, True)})
    io1.beating = io2.beating = True
    io1.register()
    io2.register()
    wait_until(lambda: redis_int(env, "ioservers_alive") == 2, 5, what="2 alive")
    br = peer(env, FakeBroker, ep, "b1", FAST_MS)
    br.beating = True
    br.hello()
    assert br.table["plc1"].ioserver == "io1"
    since = br.mark()
    io1.unit_state("plc1", False)
    d = br.wait(pb.ResolverMsg.BEST_OFFERS, since, pred=lambda m: not m.full)
    assert [(b.device, b.ioserver, b.reason, b.previous_usable) for b in d.best] == \
        [("plc1", "io2", "plc1 offline at io1", False)]
    time.sleep(3 * FAST_MS / 1000)
    assert len(br.deltas(since)) == 1  # nothing about plc2 or plc3
    assert best_of(br.table) == {"plc1": ("io2", io2.publish, io2.control),
                                 "plc2": ("io1", io1.publish, io1.control),
                                 "plc3": ("io2", io2.publish, io2.control)}
    # offline at the standby of plc2: nothing moves
    since = br.mark()
    io2.unit_state("plc2", False)
    time.sleep(3 * FAST_MS / 1000)
    assert br.deltas(since) == []
    # back online at io1: fail-back without a dip
    io1.unit_state("plc1", True)
    d = br.wait(pb.ResolverMsg.BEST_OFFERS, since, pred=lambda m: not m.full)
    assert [(b.device, b.ioserver, b.reason, b.previous_usable) for b in d.best] == \
        [("plc1", "io1", "plc1 online at io1", True)]
    wait_until(lambda: env.redis.client.hget(rkey(env, ":offers"), "plc1") == "io1", 2,
               what="offers hash follows")


def test_resolve_batch(env, pb):
    site, ep = std_site(env)
    env.start_resolver(site, ep)
    br = peer(env, FakeBroker, ep, "b1", FAST_MS)
    names = ["P1.LEVEL", "NOPE", "P3.ALARM", "P2.TEMP", "", "P1.RUN", "P1.LEVEL"]
    r = br.resolve(names)
    assert [t.name for t in r.tags] == names
    assert [t.found for t in r.tags] == [True, False, True, True, False, True, True]
    got = {t.name: (t.tag_id, t.device, t.writable) for t in r.tags if t.found}
    # ids: 1-based in file order: P1.LEVEL, P1.RUN, P2.TEMP, P3.FLOW, P3.ALARM
    assert got == {"P1.LEVEL": (1, "plc1", True), "P1.RUN": (2, "plc1", True),
                   "P2.TEMP": (3, "plc2", False), "P3.ALARM": (5, "plc3", False)}
    for t in r.tags:
        if not t.found:
            assert not t.HasField("tag_id") and not t.HasField("device")
    # an empty batch has an empty answer
    r = br.resolve([])
    assert len(r.tags) == 0
    # a large batch, in one message
    big = ["P3.FLOW" if i % 2 else "X%d" % i for i in range(5000)]
    r = br.resolve(big)
    assert len(r.tags) == 5000 and sum(t.found for t in r.tags) == 2500
    assert all(t.tag_id == 4 for t in r.tags if t.found)
    wait_until(lambda: redis_int(env, "resolves") == 3, 2, what="resolves counted")
    assert redis_int(env, "names_resolved") == len(names) + 5000


def test_reregister_on_unknown_incarnation(env, pb):
    site, ep = std_site(env)
    res = env.start_resolver(site, ep)
    io1 = peer(env, FakeIo, ep, "io1", FAST_MS, {"plc1": (1, True)}, auto_register=False)
    # never registered: heartbeat and unit state get REREGISTER
    since = io1.mark()
    io1.send(io1.msg(pb.ResolverMsg.HEARTBEAT))
    io1.wait(pb.ResolverMsg.REREGISTER, since)
    io1.register()
    # the current incarnation: no answer to a heartbeat
    since = io1.mark()
    io1.send(io1.msg(pb.ResolverMsg.HEARTBEAT))
    time.sleep(0.3)
    assert io1.got(pb.ResolverMsg.REREGISTER, since) == []
    assert io1.got(pb.ResolverMsg.ERROR, since) == []
    # another incarnation: REREGISTER for HEARTBEAT and UNIT_STATE
    old = io1.incarnation
    io1.incarnation = old + 1
    since = io1.mark()
    io1.send(io1.msg(pb.ResolverMsg.HEARTBEAT))
    io1.wait(pb.ResolverMsg.REREGISTER, since)
    since = io1.mark()
    io1.unit_state("plc1", False)
    io1.wait(pb.ResolverMsg.REREGISTER, since)
    io1.incarnation = old
    # a broker heartbeat before any HELLO: REREGISTER; after HELLO: HEARTBEAT
    br = peer(env, FakeBroker, ep, "b1", FAST_MS, auto_hello=False)
    since = br.mark()
    br.send(br.msg(pb.ResolverMsg.HEARTBEAT))
    br.wait(pb.ResolverMsg.REREGISTER, since)
    br.hello()
    since = br.mark()
    br.send(br.msg(pb.ResolverMsg.HEARTBEAT))
    br.wait(pb.ResolverMsg.HEARTBEAT, since)
    # ... and from another incarnation of the broker: REREGISTER
    br.incarnation += 1
    since = br.mark()
    br.send(br.msg(pb.ResolverMsg.HEARTBEAT))
    br.wait(pb.ResolverMsg.REREGISTER, since)
    # a broker that reconnected (new routing id) must say HELLO again
    br2 = peer(env, FakeBroker, ep, "b1", FAST_MS, auto_hello=False)
    br2.incarnation = br.incarnation
    br.hello()
    since = br2.mark()
    br2.send(br2.msg(pb.ResolverMsg.HEARTBEAT))
    br2.wait(pb.ResolverMsg.REREGISTER, since)
    # REGISTER from an I/O server the site does not list: ERROR naming it
    io9 = peer(env, FakeIo, ep, "io9", FAST_MS, {"plc1": (1, True)})
    since = io9.mark()
    io9.register()
    e = io9.wait(pb.ResolverMsg.ERROR, since)
    assert "io9" in e.error and "site" in e.error
    wait_until(lambda: redis_int(env, "unknown_ioservers") == 1, 2, what="counted")
    # a device the site does not list is ignored and counted
    io1.offers["ghost"] = (1, True)
    io1.register()
    wait_until(lambda: redis_int(env, "unknown_devices") == 1, 2, what="unknown device")
    assert "ghost" in res.log_text()


def test_restart_asks_everyone_to_register_again(env, pb):
    site, ep = std_site(env)
    res = env.start_resolver(site, ep)
    io1 = peer(env, FakeIo, ep, "io1", FAST_MS, {"plc1": (1, True), "plc2": (1, False)})
    io2 = peer(env, FakeIo, ep, "io2", FAST_MS,
               {"plc1": (2, True), "plc2": (2, True), "plc3": (1, True)})
    io1.beating = io2.beating = True
    io1.register()
    io2.register()
    wait_until(lambda: redis_int(env, "ioservers_alive") == 2, 5, what="2 alive")
    br = peer(env, FakeBroker, ep, "b1", FAST_MS)
    br.beating = True
    before = best_of({b.device: b for b in br.hello().best})
    assert before["plc1"][0] == "io1" and before["plc2"][0] == "io2"
    keys = [rkey(env), rkey(env, ":offers"), rkey(env, ":ioservers")]
    assert all(env.redis.client.exists(k) for k in keys)
    res.stop(signal.SIGKILL)
    t_kill = time.monotonic()
    # nobody refreshes the keys: they expire within 3 ping times
    wait_until(lambda: not any(env.redis.client.exists(k) for k in keys),
               3 * FAST_MS / 1000 + 1.0, interval=0.02, what="keys expired")
    assert time.monotonic() - t_kill <= 3 * FAST_MS / 1000 + 1.0
    marks = (io1.mark(), io2.mark(), br.mark())
    env._owned.remove(res)
    env.start_resolver(site, ep)
    # their next heartbeats get REREGISTER; they register / say HELLO again
    io1.wait(pb.ResolverMsg.REREGISTER, marks[0], timeout=5)
    io2.wait(pb.ResolverMsg.REREGISTER, marks[1], timeout=5)
    br.wait(pb.ResolverMsg.REREGISTER, marks[2], timeout=5)
    br.wait(pb.ResolverMsg.BEST_OFFERS, marks[2], timeout=5, pred=lambda m: m.full)
    wait_until(lambda: redis_int(env, "ioservers_alive") == 2, 5, what="2 alive again")
    after = best_of({b.device: b for b in br.hello().best})
    assert after == before
    # the broker's table, from the full table and the deltas since, agrees
    wait_until(lambda: best_of(br.table) == before, 2, what="broker table")


def test_malformed_frames_get_error_and_are_counted(env, pb):
    site, ep = std_site(env)
    res = env.start_resolver(site, ep)
    br = peer(env, FakeBroker, ep, "b1", FAST_MS)
    R = pb.ResolverMsg
    bad = [
        ([b"\xff\xff\xff garbage"], "not a scada.ResolverMsg"),
        ([b""], "not a scada.ResolverMsg"),                       # no kind
        ([R(kind=R.HELLO, name="b1", incarnation=1).SerializeToString(), b"x"], "frames"),
        ([b"", R(kind=R.HELLO, name="b1", incarnation=1).SerializeToString()], "frames"),
        ([R(kind=R.REGISTER, name="io1", incarnation=1).SerializeToString()], "publish"),
        ([R(kind=R.REGISTER, incarnation=1, publish="p", control="c").SerializeToString()],
         "name"),
        ([R(kind=R.HELLO, name="b1").SerializeToString()], "incarnation"),
        ([R(kind=R.HEARTBEAT, incarnation=3).SerializeToString()], "name"),
        ([R(kind=R.UNIT_STATE, name="io1").SerializeToString()], "incarnation"),
        ([R(kind=R.RESOLVE, names=["P1.LEVEL"]).SerializeToString()], "id"),
        ([R(kind=R.BEST_OFFERS).SerializeToString()], "BEST_OFFERS"),
        ([R(kind=R.RESOLVED, id=1).SerializeToString()], "RESOLVED"),
        ([b"\x08\x63"], "unknown kind 99"),
        ([R(kind=R.HELLO, name="x" * 300, incarnation=1).SerializeToString()], "name"),
        ([R(kind=R.HELLO, name="io1", incarnation=1).SerializeToString()], "I/O server"),
    ]
    # an offer without its required device does not decode either
    reg = R(kind=R.REGISTER, name="io1", incarnation=1, publish="p", control="c")
    o = reg.offers.add(device="plc1", priority=1, online=True)
    # (valid, with a device the site does not list: no ERROR, see test_reregister_*)
    bad.append(([reg.SerializeToString().replace(b"plc1", b"plc9")], None))
    o.device = ""
    bad.append(([reg.SerializeToString()], "device"))
    count = 0
    for frames, word in bad:
        since = br.mark()
        br.send_raw(frames)
        if word is None:
            continue
        count += 1
        e = br.wait(R.ERROR, since, what="ERROR for %r" % (frames,))
        assert e.error.startswith("malformed message: "), e.error
        assert word in e.error, (word, e.error)
    wait_until(lambda: redis_int(env, "malformed") == count, 2, what="malformed counted")
    # a burst: counted, answered, but at most a line or two in the log
    lines_before = res.log_text().count("malformed message from peer")
    since = br.mark()
    for i in range(200):
        br.send_raw([b"\x01\x02\x03"])
    wait_until(lambda: len(br.got(R.ERROR, since)) == 200, 5, what="200 ERRORs")
    wait_until(lambda: redis_int(env, "malformed") == count + 200, 2, what="burst counted")
    assert res.log_text().count("malformed message from peer") - lines_before <= 2
    # still serving
    assert br.hello().full
    assert [t.found for t in br.resolve(["P1.LEVEL", "NOPE"]).tags] == [True, False]
    # an ERROR from a peer is logged, never answered
    since = br.mark()
    br.send(R(kind=R.ERROR, error="testing"))
    time.sleep(0.3)
    assert br.got(R.ERROR, since) == []
    assert res.alive()


def _bad_site(env, tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text.replace("@REDIS@", str(env.redis.port)))
    return path


BAD_SITE = """\
site: badsite
redis: {host: 127.0.0.1, port: @REDIS@}
ping_time_ms: 200
resolver:
  endpoint: tcp://127.0.0.1:5500
  colour: blue
ioservers:
  - {name: io1, publish: "tcp://127.0.0.1:1", control: "tcp://127.0.0.1:2"}
channels:
  - name: line1
    type: network
    devices:
      - {name: plc1, address: "127.0.0.1:1502", servers: [io1], tags: [{name: T1, address: "hr:0"}]}
security: {plain: true}
"""


def test_bad_site_file_exits_2(env, tmp_path):
    path = _bad_site(env, tmp_path, BAD_SITE)
    r = subprocess.run([env.bin("scada-resolver"), "--config", str(path)], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 2, r
    msg = r.stderr.strip()
    assert "\n" not in msg, msg
    assert "%s:6: resolver.colour: " % path in msg, msg
    # another kind: a type error on a top-level key
    path = _bad_site(env, tmp_path, BAD_SITE.replace("  colour: blue\n", "")
                     .replace("ping_time_ms: 200", "ping_time_ms: fast"))
    r = subprocess.run([env.bin("scada-resolver"), "--config", str(path)], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 2 and "%s:3: ping_time_ms: " % path in r.stderr, r
    # a missing file
    r = subprocess.run([env.bin("scada-resolver"), "--config", str(tmp_path / "none.yaml")],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and str(tmp_path / "none.yaml") in r.stderr, r


def test_cli_usage(env, tmp_path):
    path = _bad_site(env, tmp_path, BAD_SITE.replace("  colour: blue\n", ""))
    res = env.bin("scada-resolver")
    for argv, word in [([res], "--config"), ([res, "--config", str(path), "--bogus"], "usage"),
                       ([res, "--config", str(path), "extra"], "extra"),
                       ([res, "--config", str(path), "--log-level", "loud"], "loud")]:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        assert r.returncode == 2 and word in r.stderr, (argv, r)
    r = subprocess.run([res, "--help"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0 and "usage" in r.stdout and "--config" in r.stdout, r


def test_bind_failure_exits_1(env, tmp_path):
    site, ep = std_site(env)
    port = int(ep.rsplit(":", 1)[1])
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
        s.listen(1)
        r = subprocess.run([env.bin("scada-resolver"), "--config", site], capture_output=True,
                           text=True, timeout=20)
    finally:
        s.close()
    assert r.returncode == 1, r
    assert ep in r.stderr and "in use" in r.stderr, r.stderr


def test_default_endpoint(env, pb, tmp_path):
    """No resolver section: tcp://127.0.0.1:5500, and --name names the logs."""
    if not H.port_is_free(5500):
        pytest.skip("port 5500 is in use")
    path = _bad_site(env, tmp_path, BAD_SITE.replace("resolver:\n  endpoint: tcp://127.0.0.1:5500"
                                                     "\n  colour: blue\n", ""))
    svc = env.own(H.Service(env.bin("scada-resolver"), "resolver", str(path), "r7",
                            tmp_path / "r7.log", "tcp://127.0.0.1:5500"))
    br = peer(env, FakeBroker, "tcp://127.0.0.1:5500", "b1", FAST_MS)
    assert [b.device for b in br.hello().best] == ["plc1"]
    assert " r7 " in svc.log_text()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_marks_stopped(env, pb, sig):
    site, ep = std_site(env)
    res = env.start_resolver(site, ep)
    wait_until(lambda: env.redis.client.hget(rkey(env), "state") == "running", 3, what="running")
    res.send(sig)
    assert res.wait(10) == 0, res.log_tail()
    assert env.redis.client.hget(rkey(env), "state") == "stopped"
    assert H.port_is_free(int(ep.rsplit(":", 1)[1]))
    wait_until(lambda: not env.redis.client.exists(rkey(env)), 3 * FAST_MS / 1000 + 1,
               what="key expired")


def test_with_real_ioserver(env, pb):
    """scada-ioserver registers its devices: the broker's table shows it,
    with the endpoints of the site file; stopped, the standby takes over."""
    mb = env.start_modbus({"hr": {"0": 7}})
    top = env.pubsub_top(brokers=())
    del top["brokers"]
    ep = top["resolver"]["endpoint"]
    io1 = env.ioserver_cfg("io1")
    devs = [{"name": "plc1", "address": "127.0.0.1:%d" % mb.port,
             "servers": [{"ioserver": "io1", "priority": 1}, {"ioserver": "io2", "priority": 2}],
             "tags": [tag("T1", "hr:0")]}]
    site = env.site([io1, env.ioserver_cfg("io2")],
                    [{"name": "line1", "type": "network", "devices": devs}],
                    ping_time_ms=FAST_MS, **top)
    env.start_resolver(site, ep)
    fake2 = peer(env, FakeIo, ep, "io2", FAST_MS, {"plc1": (2, True)})
    fake2.beating = True
    fake2.register()
    srv = env.start_ioserver(site, io1)
    br = peer(env, FakeBroker, ep, "b1", FAST_MS)
    br.beating = True
    br.hello()
    wait_until(lambda: br.table.get("plc1") is not None and br.table["plc1"].ioserver == "io1",
               10, what="plc1 at io1")
    b = br.table["plc1"]
    assert b.publish == io1["publish"] and b.control == io1["control"]
    srv.stop(signal.SIGKILL)
    wait_until(lambda: br.table["plc1"].ioserver == "io2", 2 * FAST_MS / 1000 + 1,
               what="plc1 moved to io2")
