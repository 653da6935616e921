"""System tests of publish-subscribe: scada-resolver, scada-broker and
on-demand polling in scada-ioserver, with scada-devsim as the plant.

Clients are the independent Python implementation in pyclient.py (pyzmq and
Python protobuf generated from proto/), so these tests also show the wire
protocol is what proto/scada.proto documents.

- test_page_*: one request, one reply with ids and first values; updates
  follow; unknown tags are not found at once; malformed requests.
- test_write_*: writes routed to the best offer, with results.
- test_on_demand_*: a tag is subscribed once however many clients want it,
  and not polled when nobody does (unless always_scan).
- test_failover_*: kill -9 of the primary: quality dips, values resume from
  the standby within 2 x ping_time, nothing stale shown good; fail-back;
  a unit offline at the primary moves that unit only.
- test_redis_*: the resolver's and broker's keys.
"""
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

import scada_helpers as H
from pyclient import PyClient
from scada_helpers import wait_until

PING_MS = 500


def Q(name):
    return H.pb.Quality.Value(name)


def ramp(name, addr, period=3000, always=False):
    """A ramping uint16 tag; always_scan ones sit at hr:50+ (a block of
    their own, so they do not drag the others' registers along)."""
    t = {"name": name, "address": addr, "type": "uint16",
         "sim": {"kind": "ramp", "min": 0, "max": 60000, "period_ms": period}}
    if always:
        t["always_scan"] = True
    return t


class Plant:
    """A site of `ndev` simulated devices with `ntags` ramping tags each,
    served by I/O servers io1 (priority 1) [and io2 (priority 2)], a
    resolver and broker b1; everything started."""

    def __init__(self, env, ndev=2, ntags=5, redundant=False, scan_ms=200, always=(),
                 start=True, **broker_kw):
        self.env = env
        ports = env.free_ports(ndev)
        self.ports = ports
        self.ios = [env.ioserver_cfg("io1", always_scan=False, unit_probe_ms=500)]
        if redundant:
            self.ios.append(env.ioserver_cfg("io2", always_scan=False, unit_probe_ms=500))
        servers = [{"ioserver": "io1", "priority": 1}]
        if redundant:
            servers.append({"ioserver": "io2", "priority": 2})
        devices = []
        self.tags = {}
        for d in range(ndev):
            name = "d%d" % (d + 1)
            tags = []
            for t in range(ntags):
                tname = "D%d.T%d" % (d + 1, t + 1)
                tags.append(ramp(tname, "hr:%d" % (t + 50 if tname in always else t),
                                 always=tname in always))
            tags.append({"name": "D%d.SP" % (d + 1), "address": "hr:100", "type": "uint16"})
            tags.append({"name": "D%d.IN" % (d + 1), "address": "ir:100", "type": "uint16"})
            self.tags[name] = [t["name"] for t in tags]
            devices.append({"name": name, "address": "127.0.0.1:%d" % (ports + d),
                            "servers": [dict(s) for s in servers], "scan_ms": scan_ms,
                            "tags": tags})
        top = env.pubsub_top(**broker_kw)
        self.resolver_ep = top["resolver"]["endpoint"]
        self.broker_ep = top["brokers"][0]["endpoint"]
        self.site = env.site(self.ios, [{"name": "net", "type": "network",
                                         "devices": devices}],
                             ping_time_ms=PING_MS, resolve_retry_backoff_ms=200, **top)
        self.srv = {}
        if start:
            self.devsim = env.start_devsim(self.site)
            self.resolver = env.start_resolver(self.site, self.resolver_ep)
            for cfg in self.ios:
                self.start_io(cfg["name"])
            self.broker = env.start_broker(self.site, "b1", self.broker_ep)

    def cfg(self, name):
        return [c for c in self.ios if c["name"] == name][0]

    def start_io(self, name, wrap=()):
        self.srv[name] = self.env.start_ioserver(self.site, self.cfg(name), wrap=wrap)
        return self.srv[name]

    def client(self, name="py", **kw):
        return self.env.own(PyClient(H.pb, self.broker_ep, name, **kw))

    def offer(self, device):
        return self.env.redis.client.hget("scada:%s:resolver:offers" % self.env.site_name, device)


def good_value(u):
    return u is not None and u.quality == Q("GOOD") and u.value is not None


# ------------------------------------------------------------------- pages


def test_page_one_request_first_values_then_updates(env):
    p = Plant(env)
    c = p.client()
    names = p.tags["d1"][:5] + p.tags["d2"][:2] + ["NO.SUCH.TAG"]
    rep = c.subscribe(1, names)
    assert list(rep.tag_ids[:7]) and all(rep.tag_ids[:7]) and rep.tag_ids[7] == 0
    assert len(set(rep.tag_ids[:7])) == 7
    # Every tag's first value comes with the reply or right after it, good.
    c.wait(lambda: all(good_value(c.value(n)) for n in names[:7]), 5, "first values")
    # Then changes (the tags ramp).
    before = {n: c.value(n).value for n in names[:7]}
    c.wait(lambda: all(c.value(n).value != before[n] for n in names[:7]), 5, "updates")
    # The I/O server polls exactly the 7 subscribed tags.
    st = p.srv["io1"].status()
    assert st["tags_active"] == 7, st


def test_page_change_replaces_page_and_uses_ids(env):
    p = Plant(env)
    c = p.client()
    a = p.tags["d1"][:3]
    c.subscribe(1, a)
    c.wait(lambda: all(good_value(c.value(n)) for n in a), 5, "page A")
    # The same page, new content: one request, the known tag travels as an id.
    b = [a[0]] + p.tags["d2"][:2]
    sent = []
    orig = c.send

    def spy(raw=None, **fields):
        sent.append(fields)
        return orig(raw, **fields)
    c.send = spy
    c.subscribe(1, b)
    c.send = orig
    sub = [f for f in sent if f.get("kind") == H.pb.ClientRequest.SUBSCRIBE][0]
    assert list(sub["names"]) == p.tags["d2"][:2] and list(sub["tag_ids"]) == [c.ids[a[0]]]
    c.wait(lambda: all(good_value(c.value(n)) for n in b), 5, "page B")
    wait_until(lambda: p.srv["io1"].status()["tags_active"] == 3, 5, what="3 tags polled")
    # Unsubscribe: nothing polled.
    rep = c.unsubscribe(1)
    assert rep.kind == H.pb.BrokerMsg.UNSUBSCRIBED
    wait_until(lambda: p.srv["io1"].status()["tags_active"] == 0, 5, what="nothing polled")


def test_page_unknown_tags_answered_not_found(env):
    p = Plant(env)
    c = p.client()
    t0 = time.monotonic()
    rep = c.subscribe(3, ["NOPE.1", "NOPE.2"])
    assert list(rep.tag_ids) == [0, 0]
    assert time.monotonic() - t0 < 2.0
    ex = c.request(kind=H.pb.ClientRequest.EXISTS, names=["NOPE.1", p.tags["d1"][0]])
    assert list(ex.found) == [False, True]
    # (a resolver that just started answers once its I/O servers registered)
    rs = wait_until(lambda: (lambda r: r if r.ioservers[0] else None)(
        c.request(kind=H.pb.ClientRequest.RESOLVE, names=[p.tags["d1"][0], "NOPE.1"])), 10,
        what="the broker knows the best offer")
    assert rs.tag_ids[0] > 0 and rs.tag_ids[1] == 0
    assert list(rs.ioservers) == ["io1", ""]


def test_page_malformed_requests_get_errors_and_are_counted(env):
    p = Plant(env)
    c = p.client()
    c.send(raw=b"\xff\xfe garbage")
    c.wait(lambda: c.errors, 5, "an ERROR for the garbage")
    assert "malformed" in c.errors[0]
    rep = c.request(kind=H.pb.ClientRequest.SUBSCRIBE, names=["X"])  # no page
    assert rep.kind == H.pb.BrokerMsg.ERROR and "page" in rep.error
    rep = c.request(kind=H.pb.ClientRequest.WRITE, names=["A", "B"], value=1)
    assert rep.kind == H.pb.BrokerMsg.ERROR
    # Still serving.
    c.subscribe(1, p.tags["d1"][:1])
    c.wait(lambda: good_value(c.value(p.tags["d1"][0])), 5, "a value after garbage")
    key = "scada:%s:broker:b1" % env.site_name
    wait_until(lambda: int(env.redis.client.hget(key, "malformed") or 0) >= 3, 5,
               what="malformed counted in Redis")
    assert p.broker.alive()


# ------------------------------------------------------------------ writes


def test_write_routed_with_results(env):
    p = Plant(env)
    c = p.client()
    c.subscribe(1, ["D1.SP"])
    c.wait(lambda: good_value(c.value("D1.SP")), 5, "D1.SP")
    assert c.write("D1.SP", 1234) is None
    c.wait(lambda: c.value("D1.SP").value == 1234, 5, "D1.SP = 1234 read back")
    err = c.write("D1.IN", 5)
    assert err and "read-only" in err
    err = c.write("NO.SUCH", 5)
    assert err and "no such tag" in err
    # By name, never subscribed: resolved on the way.
    assert c.write("D2.SP", 77) is None
    c.subscribe(2, ["D2.SP"])
    c.wait(lambda: c.value("D2.SP") and c.value("D2.SP").value == 77, 5, "D2.SP = 77")


# --------------------------------------------------------------- on demand


def test_on_demand_each_tag_polled_once_and_released(env):
    p = Plant(env, ndev=1, ntags=6, always=("D1.T6",))
    io = p.srv["io1"]
    wait_until(lambda: io.status()["tags_active"] == 1, 5, what="only the always_scan tag")
    a, b = p.client("a"), p.client("b")
    pa, pb_ = p.tags["d1"][0:3], p.tags["d1"][2:5]  # overlap: T3
    a.subscribe(1, pa)
    b.subscribe(1, pb_)
    union = set(pa) | set(pb_) | {"D1.T6"}
    wait_until(lambda: io.status()["tags_active"] == len(union), 5, what="union polled")
    # Each tag once: reads per second match the union, not the sum.
    s0 = io.status()
    time.sleep(2.0)
    s1 = io.status()
    per_tag = (s1["tag_reads"] - s0["tag_reads"]) / len(union)
    # 6 tags in one block, scan 200 ms: about 10 reads of each tag in 2 s;
    # polled twice (once per client) would give about 20.
    assert 5 <= per_tag <= 14, (per_tag, s0, s1)
    a.unsubscribe(1)
    b.unsubscribe(1)
    wait_until(lambda: io.status()["tags_active"] == 1, 5, what="released")
    # Only the always_scan tag is read now.
    s0 = io.status()
    time.sleep(1.5)
    s1 = io.status()
    assert s1["tag_reads"] - s0["tag_reads"] <= 10, (s0, s1)
    assert len(union) - 1 > 0


def test_on_demand_idle_unit_probed_not_polled(env):
    p = Plant(env, ndev=1, ntags=3)
    io = p.srv["io1"]
    wait_until(lambda: env.redis.client.hget(
        "scada:%s:ioserver:io1:device:d1" % env.site_name, "state") == "online", 10,
        what="d1 online through probes")
    s0 = io.status()
    time.sleep(1.2)
    s1 = io.status()
    assert s1["tag_reads"] == s0["tag_reads"], "no tag is read while nobody subscribes"
    assert s1["probes"] > s0["probes"]


# ---------------------------------------------------------------- failover


class _Remove:
    def __init__(self, path):
        self.path = path

    def stop(self):
        if os.path.exists(self.path):
            os.unlink(self.path)


def _watch(p, names):
    c = p.client("watcher")
    c.subscribe(1, names)
    c.wait(lambda: all(good_value(c.value(n)) for n in names), 10, "first values")
    return c


def test_failover_kill_primary_then_failback(env):
    p = Plant(env, redundant=True)
    names = p.tags["d1"][:3] + p.tags["d2"][:2]
    wait_until(lambda: p.offer("d1") == "io1" and p.offer("d2") == "io1", 10,
               what="io1 best offer")
    c = _watch(p, names)
    assert p.srv["io1"].status()["tags_active"] == 5
    assert p.srv["io2"].status()["tags_active"] == 0
    # kill -9 the primary.
    t_kill = time.monotonic()
    wall_kill = time.time() * 1000
    p.srv["io1"].send(signal.SIGKILL)
    for n in names:
        # Quality dips...
        c.wait(lambda n=n: any(u.quality != Q("GOOD") for u in c.history(n, t_kill)), 5,
               "%s goes bad" % n)
        # ...then good values from the standby, within 2 x ping_time.
        good = c.wait(lambda n=n: [u for u in c.history(n, t_kill) if good_value(u)
                                   and any(b.quality != Q("GOOD") and b.t <= u.t
                                           for b in c.history(n, t_kill))], 5,
                      "%s good again" % n)
        assert good[0].t - t_kill <= 2 * PING_MS / 1000.0 + 0.3, (n, good[0].t - t_kill)
        # Nothing stale shown good: every good value after the kill was read
        # after the standby took over (no old cached value).
        for u in c.history(n, t_kill):
            if u.quality == Q("GOOD"):
                assert u.ts >= wall_kill - 300, (n, u.ts, wall_kill)
    assert p.srv["io2"].status()["tags_active"] == 5
    wait_until(lambda: p.offer("d1") == "io2", 5, what="Redis says io2")
    # Fail-back: restart the primary; it takes the tags back.
    t_back = time.monotonic()
    p.srv["io1"].stop()
    p.start_io("io1")
    wait_until(lambda: p.offer("d1") == "io1" and p.offer("d2") == "io1", 10,
               what="io1 best offer again")
    wait_until(lambda: p.srv["io1"].status()["tags_active"] == 5, 5, what="io1 polls again")
    wait_until(lambda: p.srv["io2"].status()["tags_active"] == 0, 5, what="io2 released")
    # Values still flow, good.
    t1 = time.monotonic()
    for n in names:
        c.wait(lambda n=n: any(good_value(u) for u in c.history(n, t1)), 5, "%s after" % n)
    # A planned fail-back has no quality dip (make before break).
    for n in names:
        bad = [u for u in c.history(n, t_back) if u.quality != Q("GOOD")]
        assert not bad, (n, bad)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("iptables")
                    or not shutil.which("setpriv"), reason="needs root, iptables, setpriv")
def test_failover_unit_offline_at_primary_moves_that_unit_only(env):
    p = Plant(env, redundant=True, start=False)
    # A copy of the site file that user nobody can read.
    public = "/tmp/scada-pubsub-%d.yaml" % os.getpid()
    shutil.copy(p.site, public)
    os.chmod(public, 0o644)
    env.own(_Remove(public))
    p.site = public
    env.start_devsim(p.site)
    p.resolver = env.start_resolver(p.site, p.resolver_ep)
    # io1 runs as user nobody so iptables can cut its path to d1 alone.
    p.start_io("io1", wrap=("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"))
    p.start_io("io2")
    p.broker = env.start_broker(p.site, "b1", p.broker_ep)
    names = p.tags["d1"][:2] + p.tags["d2"][:2]
    wait_until(lambda: p.offer("d1") == "io1" and p.offer("d2") == "io1", 10,
               what="io1 best offer")
    c = _watch(p, names)
    port = p.ports  # d1
    rule = ["OUTPUT", "-p", "tcp", "-d", "127.0.0.1", "--dport", str(port), "-m", "owner",
            "--uid-owner", "65534", "-j", "DROP"]
    subprocess.run(["iptables", "-I"] + rule, check=True)
    try:
        t0 = time.monotonic()
        wait_until(lambda: p.offer("d1") == "io2", 15, what="d1 moves to io2")
        time.sleep(1.0)
        assert p.offer("d2") == "io1"
        for n in p.tags["d1"][:2]:
            c.wait(lambda n=n: any(good_value(u) for u in c.history(n, t0)
                                   if u.ts > 0), 10, "%s from io2" % n)
        # d2's tags never dipped.
        for n in p.tags["d2"][:2]:
            assert all(u.quality == Q("GOOD") for u in c.history(n, t0)), c.history(n, t0)
        st1, st2 = p.srv["io1"].status(), p.srv["io2"].status()
        assert st2["tags_active"] == 2 and st1["tags_active"] == 2, (st1, st2)
    finally:
        while subprocess.run(["iptables", "-D"] + rule, capture_output=True).returncode == 0:
            pass


# ------------------------------------------------------------------- redis


def test_redis_keys_of_resolver_and_broker(env):
    p = Plant(env)
    c = p.client("screen7")
    c.subscribe(1, p.tags["d1"][:3])
    c.wait(lambda: all(good_value(c.value(n)) for n in p.tags["d1"][:3]), 5, "values")
    r = env.redis.client
    bkey = "scada:%s:broker:b1" % env.site_name
    wait_until(lambda: r.hget(bkey, "clients") == "1" and r.hget(bkey, "tags_subscribed") == "3",
               5, what="broker key")
    h = r.hgetall(bkey)
    assert h["state"] == "running" and int(h["pid"]) == p.broker.pid and h["resolver"] == "up"
    assert 0 < r.pttl(bkey) <= 3 * PING_MS
    clients = r.hgetall(bkey + ":clients")
    assert any(k.startswith("screen7@") and v == "pages=1 tags=3" for k, v in clients.items())
    assert r.hget("scada:%s:resolver:offers" % env.site_name, "d1") == "io1"
    # scadactl status renders them.
    wait_until(lambda: "tags polled 3" in env.scadactl(p.site, "status").stdout, 5,
               what="status shows the polled tags")
    out = env.scadactl(p.site, "status")
    assert out.returncode == 0, out.stderr
    assert "resolver            running" in out.stdout, out.stdout
    assert "I/O servers 1/1 alive" in out.stdout, out.stdout
    assert "broker b1" in out.stdout and "clients 1" in out.stdout, out.stdout
    assert "tags polled 3" in out.stdout, out.stdout
    js = [json.loads(l) for l in env.scadactl(p.site, "--json", "status").stdout.splitlines()]
    assert [j for j in js if j.get("broker") == "b1"][0]["tags_subscribed"] == 3
    assert [j for j in js if "resolver" in j][0]["resolver"] == "running"
    # The broker stops: its key says so or expires.
    p.broker.send(signal.SIGKILL)
    wait_until(lambda: not r.exists(bkey), 3 * PING_MS / 1000.0 + 2, what="broker key expires")


# ------------------------------------------------------ startup and resolver


def test_subscribe_on_startup_polls_everything_resolve_on_startup_nothing(env):
    p = Plant(env, ndev=2, ntags=3, subscribe_on_startup=True)
    total = sum(len(t) for t in p.tags.values())
    wait_until(lambda: p.srv["io1"].status()["tags_active"] == total, 10,
               what="every tag polled with no client")
    env2_key = "scada:%s:broker:b1" % env.site_name
    wait_until(lambda: env.redis.client.hget(env2_key, "tags_subscribed") == str(total), 5,
               what="broker holds every tag")
    # A page is answered from the broker's cache: values in the reply itself.
    c = p.client()
    rep = c.subscribe(1, p.tags["d1"][:3])
    assert len(rep.updates) == 3 and all(u.quality == Q("GOOD") for u in rep.updates)


def test_resolve_on_startup_page_change_is_subscribe_only(env):
    p = Plant(env, ndev=2, ntags=3, resolve_on_startup=True)
    total = sum(len(t) for t in p.tags.values())
    key = "scada:%s:broker:b1" % env.site_name
    r = env.redis.client
    wait_until(lambda: r.hget(key, "tags_known") == str(total), 10, what="all tags resolved")
    assert p.srv["io1"].status()["tags_active"] == 0, "resolving polls nothing"
    resolves = int(r.hget(key, "resolves"))
    c = p.client()
    c.subscribe(1, p.tags["d2"])
    c.wait(lambda: all(good_value(c.value(n)) for n in p.tags["d2"]), 5, "values")
    time.sleep(PING_MS / 1000.0 * 1.5)  # the broker's key is refreshed
    assert int(r.hget(key, "resolves")) == resolves, "no resolve on the page change"


def test_resolve_retried_until_the_resolver_answers(env):
    p = Plant(env, ndev=1, ntags=2, start=False)
    env.start_devsim(p.site)
    for cfg in p.ios:
        p.start_io(cfg["name"])
    p.broker = env.start_broker(p.site, "b1", p.broker_ep)
    c = p.client()
    t0 = time.monotonic()
    result = {}

    def ask():
        try:
            result["rep"] = c.subscribe(1, p.tags["d1"][:2], timeout=20)
        except Exception as exc:  # reported below
            result["exc"] = exc
    import threading
    th = threading.Thread(target=ask)
    th.start()
    time.sleep(1.0)  # backoff 200 ms: attempts at 0, 0.2, 1.0 s...
    p.resolver = env.start_resolver(p.site, p.resolver_ep)
    th.join(20)
    assert "rep" in result, result
    assert all(result["rep"].tag_ids)
    c.wait(lambda: all(good_value(c.value(n)) for n in p.tags["d1"][:2]), 10, "values")
    retries = int(env.redis.client.hget("scada:%s:broker:b1" % env.site_name,
                                        "resolve_retries") or 0)
    assert retries >= 1
    assert time.monotonic() - t0 < 15


# -------------------------------------------------------------- heartbeats


def test_heartbeats_only_on_idle_link_and_silent_client_released(env):
    p = Plant(env, ndev=1, ntags=2, client_heartbeat_ms=300)
    # A client that heartbeats: kept, and hears heartbeats on its idle link.
    live = p.client("live", heartbeat_ms=300)
    live.subscribe(1, ["D1.SP"])  # a constant: no updates after the first
    c = p.client("mute")          # never heartbeats
    c.subscribe(1, ["D1.T1"])
    io = p.srv["io1"]
    wait_until(lambda: io.status()["tags_active"] == 2, 5, what="2 tags polled")
    h0 = live.heartbeats
    time.sleep(1.6)
    # About one heartbeat per 300 ms of idle link, no more.
    assert 2 <= live.heartbeats - h0 <= 7, live.heartbeats - h0
    # The mute client is gone after 3 x 300 ms of silence: its tag is released,
    # the live client's is not.
    wait_until(lambda: io.status()["tags_active"] == 1, 3, what="mute client's tag released")
    key = "scada:%s:broker:b1" % env.site_name
    wait_until(lambda: env.redis.client.hget(key, "clients") == "1", 3, what="one client left")
    # A busy link carries no heartbeats: the ramping tag updates every scan.
    busy = p.client("busy", heartbeat_ms=300)
    busy.subscribe(1, ["D1.T2"])
    busy.wait(lambda: busy.value("D1.T2") is not None, 5, "D1.T2")
    h0, m0 = busy.heartbeats, busy.messages
    time.sleep(1.5)
    assert busy.messages - m0 >= 5, "updates flow"
    assert busy.heartbeats - h0 == 0, busy.heartbeats - h0


def test_resolver_restart_disturbs_nothing(env):
    p = Plant(env, redundant=True)
    names = p.tags["d1"][:2]
    wait_until(lambda: p.offer("d1") == "io1", 10, what="io1 best offer")
    c = _watch(p, names)
    p.resolver.send(signal.SIGKILL)
    p.resolver.wait(5)
    t0 = time.monotonic()
    # Values keep flowing from io1 while the resolver is away.
    c.wait(lambda: all(len([u for u in c.history(n, t0) if good_value(u)]) >= 3
                       for n in names), 5, "values without a resolver")
    p.resolver = env.start_resolver(p.site, p.resolver_ep)
    # It learns everything again (I/O servers and the broker are asked to
    # register) and says io1 again; no quality dip anywhere.
    wait_until(lambda: p.offer("d1") == "io1" and p.offer("d2") == "io1", 10,
               what="offers rebuilt")
    key = "scada:%s:resolver" % env.site_name
    wait_until(lambda: env.redis.client.hget(key, "brokers") == "1", 5, what="broker again")
    time.sleep(1.0)
    for n in names:
        assert all(u.quality == Q("GOOD") for u in c.history(n, t0)), c.history(n, t0)
    # And a failover still works through the new resolver.
    t1 = time.monotonic()
    p.srv["io1"].send(signal.SIGKILL)
    for n in names:
        c.wait(lambda n=n: [u for u in c.history(n, t1) if good_value(u)
                            and any(b.quality != Q("GOOD") and b.t <= u.t
                                    for b in c.history(n, t1))], 5, "%s from io2" % n)
