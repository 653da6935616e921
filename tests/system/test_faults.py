"""Faults, and what the user sees.

A whole site: scada-devsim, the resolver, I/O servers io1 (priority 1) and
io2 (priority 2, the standby) for devices d1 and d2, broker b1 and the
alarm service. Ramping tags (read every 100 ms, so every reading is a new
value) are watched by a client; "stale shown good" is judged per fault:

- test_kill_each_service_in_turn: `scadactl --json watch` in a subprocess
  while io1, the resolver, b1 and the alarm service are killed with -9 one
  after the other and restarted (as the supervisor would):
  - io1: every tag dips, then is good from io2 within 2 x ping_time_ms
    (+0.5 s); once a tag dipped, every good value of it was read after the
    kill (by io2: io1 cannot have read it); io1 restarted takes the tags
    back without a dip;
  - the resolver: values keep coming, all good, none older than 1 s; after
    its restart the offers are rebuilt, still without a dip;
  - b1: within 3 x client_heartbeat_ms (the client's documented bound; it
    is at once on a closed connection) the client says "broker-lost" and
    shows every tag bad-no-comm "broker lost"; nothing good until
    "broker-back"; then good values, none older than 1 s;
  - the alarm service, killed right after an acknowledgement was confirmed:
    after its restart the alarm is still acknowledged by the same user,
    with one ACK in its history; the values did not notice.
  Throughout: no good value older than 1 s when it arrived.
- test_redis_outage_30s_under_load: Redis stopped for 30 s while values
  change every 100 ms; io1 killed during the outage. Values keep flowing
  (no gap over 1 s outside the failover), the failover happens within
  2 x ping_time_ms (+0.5 s), io1.COMM and a limit alarm are raised and
  published on the alarm PUB; Redis back (empty): within 2 s every state
  key README documents for the running processes exists with its fields,
  type and TTL (README's tables parsed by test_rediskeys.py), and the
  offers say io2.
- test_partition_ioserver_from_devices: iptables drops io1's packets to
  the devices (io1 runs as another user, an owner match): the devices move
  to io2 within max_read_timeouts x (scan_ms + standard_reply_delay_ms)
  + 1 s, good values after the dip were read after the cut; healed, io1
  takes them back within reconnect_min_ms x 1.25 + 2 s without a dip.
- test_partition_broker_from_resolver: iptables drops b1's packets to the
  resolver (b1 runs as another user): the resolver forgets b1 and b1 says
  `resolver down` in Redis within 3 x ping_time_ms (+ one ping check, one
  Redis refresh); the page's values keep coming, all good and fresh;
  healed, both see each other again.
"""
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time

import pytest

import scada_helpers as H
from pyclient import PyClient
from scada_helpers import wait_until
from test_rediskeys import check_key, readme_keys

PING_MS = 500
HB_MS = 1000            # client_heartbeat_ms of b1
SCAN_MS = 100
REPLY_DELAY_MS = 150    # standard_reply_delay_ms of the channel
MAX_READ_TIMEOUTS = 2
RECONNECT_MIN_MS = 300
MAX_AGE_MS = 1000       # a good value older than this when it arrives is stale
TAGS = ("R1", "R2", "R3")

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("iptables") or not shutil.which("setpriv"),
    reason="needs root, iptables, setpriv")


def Q(name):
    return H.pb.Quality.Value(name)


def wall_ms():
    return time.time() * 1000.0


# ---------------------------------------------------------------- the site


def ramp(name, addr):
    return {"name": name, "address": addr, "type": "uint16",
            "sim": {"kind": "ramp", "min": 0, "max": 60000, "period_ms": 3000}}


def level(name, addr, initial):
    return {"name": name, "address": addr, "type": "uint16",
            "sim": {"kind": "const", "initial": initial}, "alarms": {"hi": 50, "deadband": 5}}


class _Remove:
    def __init__(self, path):
        self.path = path

    def stop(self):
        if os.path.isdir(self.path):
            shutil.rmtree(self.path)
        elif os.path.exists(self.path):
            os.unlink(self.path)


class Rule:
    """An iptables rule in OUTPUT, removed (every copy) by stop()."""

    def __init__(self, *spec):
        self.spec = ["OUTPUT", "-p", "tcp", "-d", "127.0.0.1", *spec, "-j", "DROP"]
        subprocess.run(["iptables", "-I"] + self.spec, check=True)

    def stop(self):
        while subprocess.run(["iptables", "-D"] + self.spec, capture_output=True).returncode == 0:
            pass


class Site:
    """d1 (R1, R2, L1: an alarm tag above its limit) and d2 (R3, L2: below
    its limit) served by io1 and io2; resolver, b1, alarm service."""

    def __init__(self, env, public=False):
        self.env = env
        self.ports = env.free_ports(2)
        self.ios = {n: env.ioserver_cfg(n, always_scan=False, unit_probe_ms=500,
                                        reconnect_min_ms=RECONNECT_MIN_MS)
                    for n in ("io1", "io2")}
        servers = [{"ioserver": "io1", "priority": 1}, {"ioserver": "io2", "priority": 2}]
        devices = [
            {"name": "d1", "address": "127.0.0.1:%d" % self.ports, "scan_ms": SCAN_MS,
             "servers": [dict(s) for s in servers],
             "tags": [ramp("R1", "hr:0"), ramp("R2", "hr:1"), level("L1", "hr:2", 80)]},
            {"name": "d2", "address": "127.0.0.1:%d" % (self.ports + 1), "scan_ms": SCAN_MS,
             "servers": [dict(s) for s in servers],
             "tags": [ramp("R3", "hr:0"), level("L2", "hr:2", 20)]},
        ]
        ch = {"name": "net", "type": "network", "standard_reply_delay_ms": REPLY_DELAY_MS,
              "max_read_timeouts": MAX_READ_TIMEOUTS, "devices": devices}
        top = env.pubsub_top(client_heartbeat_ms=HB_MS)
        self.resolver_ep = top["resolver"]["endpoint"]
        self.broker_ep = top["brokers"][0]["endpoint"]
        self.alarm = env.alarm_top()
        extra = {}
        if public:
            # Audit files of processes run as other users: a directory each
            # of them may write (the default is next to the site file).
            audit = "/tmp/scada-faults-audit-%d-%d" % (os.getpid(), self.ports)
            os.makedirs(audit, exist_ok=True)
            os.chmod(audit, 0o1777)
            env.own(_Remove(audit))
            extra["security"] = {"plain": True, "audit_dir": audit}
        self.site = env.site(list(self.ios.values()), [ch], ping_time_ms=PING_MS,
                             alarm=self.alarm, resolve_retry_backoff_ms=200, **top, **extra)
        if public:
            # a copy another user can read, for processes run as another user
            path = "/tmp/scada-faults-%d-%d.yaml" % (os.getpid(), self.ports)
            shutil.copy(self.site, path)
            os.chmod(path, 0o644)
            env.own(_Remove(path))
            self.site = path
        self.procs = {}

    def start(self, wrap=None):
        """Everything; wrap: {process name: command prefix}."""
        wrap = wrap or {}
        env = self.env
        self.procs["devsim"] = env.start_devsim(self.site)
        self.start_resolver()
        for name in self.ios:
            self.start_io(name, wrap.get(name, ()))
        self.start_broker(wrap.get("b1", ()))
        self.start_alarm()
        return self

    def start_io(self, name, wrap=()):
        self.procs[name] = self.env.start_ioserver(self.site, self.ios[name], wrap=wrap)
        return self.procs[name]

    def start_resolver(self):
        self.procs["resolver"] = self.env.start_resolver(self.site, self.resolver_ep)

    def start_broker(self, wrap=()):
        if not wrap:
            self.procs["b1"] = self.env.start_broker(self.site, "b1", self.broker_ep)
            return
        # as another user: the same as Env.start_broker behind a prefix
        env = self.env
        p = env.own(H.Proc("broker-b1", [*wrap, env.bin("scada-broker"), "--config", self.site,
                                         "--name", "b1", "--log-level", "debug"],
                           env.tmp / "broker-b1.log"))
        port = int(self.broker_ep.rsplit(":", 1)[1])
        wait_until(lambda: p.alive() and H.port_listens(port) or not p.alive(), 15,
                   what="b1 listening")
        assert p.alive(), p.log_tail()
        self.procs["b1"] = p

    def start_alarm(self):
        self.procs["alarm"] = self.env.start_alarm(self.site, self.alarm["control"])

    def kill(self, name):
        p = self.procs[name]
        p.send(signal.SIGKILL)
        p.wait(5)
        p.stop()

    def key(self, rest):
        return "scada:%s:%s" % (self.env.site_name, rest)

    def hget(self, rest, field):
        return self.env.redis.client.hget(self.key(rest), field)

    def offer(self, dev):
        return self.hget("resolver:offers", dev)

    def offers_at(self, io):
        return self.offer("d1") == io and self.offer("d2") == io

    def alarm_request(self, timeout=5.0, **fields):
        import zmq
        ctx = zmq.Context.instance()
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(self.alarm["control"])
        try:
            s.send(H.pb.AlarmRequest(id=int(time.time() * 1000) & 0xFFFFFFF,
                                     **fields).SerializeToString())
            if not s.poll(int(timeout * 1000)):
                raise TimeoutError("no answer from the alarm service")
            rep = H.pb.AlarmReply()
            rep.ParseFromString(s.recv())
            return rep
        finally:
            s.close()

    def active(self):
        rep = self.alarm_request(kind=H.pb.AlarmRequest.LIST)
        assert rep.status == H.pb.AlarmReply.OK, rep.error
        return {a.alarm: a for a in rep.alarms}

    def pyclient(self):
        c = self.env.own(PyClient(H.pb, self.broker_ep, "faults", heartbeat_ms=HB_MS))
        c.subscribe(1, list(TAGS))
        c.wait(lambda: all(good(c.value(n)) for n in TAGS), 10, "first values")
        return c


def good(u):
    return u is not None and u.quality == Q("GOOD") and u.value is not None


# ------------------------------------------------------------ the watchers


def iso_ms(text):
    if text in (None, "-"):
        return 0
    dt = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    return dt.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000.0


class Watch:
    """`scadactl --json watch TAGS` in the background: each line with the
    wall time (ms) it arrived."""

    def __init__(self, env, site, tags):
        self.proc = subprocess.Popen([env.bin("scadactl"), "--config", site, "--json", "watch",
                                      *tags], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, errors="replace", bufsize=1)
        self.lines = []  # (arrival wall ms, dict)
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        env.own(self)

    def _read(self):
        for line in self.proc.stdout:
            t = wall_ms()
            try:
                obj = json.loads(line)
            except ValueError:
                obj = {"unparsed": line}
            with self.lock:
                self.lines.append((t, obj))

    def since(self, t0, t1=None):
        with self.lock:
            return [(t, o) for t, o in self.lines if t >= t0 and (t1 is None or t <= t1)]

    def values(self, tag, t0, t1=None):
        return [(t, o) for t, o in self.since(t0, t1) if o.get("tag") == tag]

    def events(self, name, t0):
        return [t for t, o in self.since(t0) if o.get("event") == name]

    def wait(self, pred, timeout, what):
        def check():
            if self.proc.poll() is not None:
                raise AssertionError("scadactl watch exited %r: %s" % (
                    self.proc.returncode, self.proc.stderr.read()))
            return pred()
        return wait_until(check, timeout, interval=0.02, what=what)

    def first_good(self, tag, t0):
        for t, o in self.values(tag, t0):
            if o["quality"] == "good":
                return t, o
        return None

    def stale(self, t0, t1=None):
        """Good values older than MAX_AGE_MS when they arrived."""
        return [(t, o) for t, o in self.since(t0, t1) if o.get("quality") == "good"
                and t - iso_ms(o["timestamp"]) > MAX_AGE_MS]

    def not_good(self, t0, t1=None):
        return [(t, o) for t, o in self.since(t0, t1) if "tag" in o and o["quality"] != "good"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.thread.join(5)


class AlarmEvents:
    """A SUB on the alarm service's PUB: (monotonic time, AlarmEvent)."""

    def __init__(self, publish):
        import zmq
        self.ctx = zmq.Context()
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"A")
        self.sub.connect(publish)
        self.events = []
        self.lock = threading.Lock()
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop:
            if self.sub.poll(50):
                frames = self.sub.recv_multipart()
                ev = H.pb.AlarmEvent()
                ev.ParseFromString(frames[1])
                with self.lock:
                    self.events.append((time.monotonic(), ev))

    def raised(self, alarm, since):
        with self.lock:
            return [t for t, e in self.events if e.alarm == alarm and t >= since
                    and e.kind == H.pb.AlarmEvent.RAISE]

    def stop(self):
        self._stop = True
        self.thread.join(2)
        self.sub.close(0)
        self.ctx.term()


def age_ms(u):
    """How old a pyclient Update's value was when it arrived."""
    return (u.t + time.time() - time.monotonic()) * 1000.0 - u.ts


def max_gap(times, t0, t1):
    pts = [t0] + sorted(t for t in times if t0 <= t <= t1) + [t1]
    return max(b - a for a, b in zip(pts, pts[1:]))


# ------------------------------------------------------------------ kill -9


def test_kill_each_service_in_turn(env):
    s = Site(env).start()
    wait_until(lambda: s.offers_at("io1"), 10, what="io1 best offer of d1 and d2")
    w = Watch(env, s.site, TAGS)
    t_start = wall_ms()
    w.wait(lambda: all(w.first_good(n, t_start) for n in TAGS), 10, "first good values")
    report = {}

    # --- io1, with io2 standing by
    t_kill = wall_ms()
    s.kill("io1")
    for n in TAGS:
        w.wait(lambda n=n: [1 for _, o in w.values(n, t_kill) if o["quality"] != "good"],
               2 * PING_MS / 1000.0 + 0.5, "%s dips after the kill of io1" % n)
        dip = [t for t, o in w.values(n, t_kill) if o["quality"] != "good"][0]
        w.wait(lambda n=n, dip=dip: w.first_good(n, dip), 2 * PING_MS / 1000.0 + 0.5,
               "%s good again from io2" % n)
        back = w.first_good(n, dip)[0]
        assert back - t_kill <= 2 * PING_MS + 500, (n, back - t_kill)
        report.setdefault("io1 failover ms", []).append(round(back - t_kill))
    wait_until(lambda: s.offers_at("io2"), 2, what="Redis says io2")
    time.sleep(0.5)
    for n in TAGS:
        # once the page showed io1's loss, nothing io1 read is good again
        dip = [t for t, o in w.values(n, t_kill) if o["quality"] != "good"][0]
        late = [(t, o) for t, o in w.values(n, dip) if o["quality"] == "good"
                and iso_ms(o["timestamp"]) <= t_kill]
        assert not late, "%s: read by io1 before its death, shown good after: %s" % (n, late)
    t_restart = wall_ms()
    s.start_io("io1")
    wait_until(lambda: s.offers_at("io1"), 10, what="io1 takes the devices back")
    time.sleep(1.0)
    assert not w.not_good(t_restart), "fail-back dipped: %s" % w.not_good(t_restart)[:3]

    # --- the resolver
    t_kill = wall_ms()
    s.kill("resolver")
    time.sleep(2.0)
    for n in TAGS:
        assert len([1 for _, o in w.values(n, t_kill) if o["quality"] == "good"]) >= 5, n
    s.start_resolver()
    wait_until(lambda: s.offers_at("io1") and s.hget("resolver", "brokers") == "1", 10,
               what="the resolver's offers and broker again")
    time.sleep(1.0)
    assert not w.not_good(t_kill), "a dip without the resolver: %s" % w.not_good(t_kill)[:3]

    # --- the broker
    t_kill = wall_ms()
    s.kill("b1")
    bound = 3 * HB_MS / 1000.0
    w.wait(lambda: w.events("broker-lost", t_kill), bound, "broker-lost")
    t_lost = w.events("broker-lost", t_kill)[0]
    for n in TAGS:
        w.wait(lambda n=n: [1 for _, o in w.values(n, t_kill) if o["quality"] == "bad-no-comm"
                            and o.get("reason") == "broker lost"], bound,
               "%s bad-no-comm: broker lost" % n)
        t_bad = [t for t, o in w.values(n, t_kill) if o["quality"] == "bad-no-comm"][0]
        assert t_bad - t_kill <= bound * 1000, (n, t_bad - t_kill)
    report["broker lost shown ms"] = round(t_lost - t_kill)
    time.sleep(0.5)
    t_restart = wall_ms()
    s.start_broker()
    w.wait(lambda: w.events("broker-back", t_restart), 5, "broker-back")
    t_back = w.events("broker-back", t_restart)[0]
    shown = [(t, o) for t, o in w.since(t_kill + 50, t_back) if o.get("quality") == "good"]
    assert not shown, "good values while the broker was gone: %s" % shown[:3]
    for n in TAGS:
        w.wait(lambda n=n: w.first_good(n, t_back), 5, "%s good after the broker's restart" % n)
    report["broker back to good ms"] = round(max(w.first_good(n, t_back)[0] for n in TAGS)
                                             - t_restart)

    # --- the alarm service, right after an acknowledgement
    wait_until(lambda: "L1.HI" in s.active(), 10, what="L1.HI active")
    rep = s.alarm_request(kind=H.pb.AlarmRequest.ACK, alarms=["L1.HI"], user="olga",
                          comment="before the crash")
    assert rep.status == H.pb.AlarmReply.OK, rep.error
    t_kill = wall_ms()
    s.kill("alarm")
    s.start_alarm()
    act = wait_until(lambda: (lambda a: a if "L1.HI" in a else None)(s.active()), 10,
                     what="L1.HI listed after the restart")
    assert act["L1.HI"].state == H.pb.ACK_ACTIVE, act["L1.HI"]
    assert act["L1.HI"].user == "olga" and act["L1.HI"].comment == "before the crash"
    hist = s.alarm_request(kind=H.pb.AlarmRequest.HISTORY, alarms=["L1.HI"])
    acks = [e for e in hist.alarms if e.kind == H.pb.AlarmEvent.ACK]
    assert len(acks) == 1 and acks[0].user == "olga", list(hist.alarms)
    assert not w.not_good(t_kill), "values dipped with the alarm service: %s" % (
        w.not_good(t_kill)[:3])

    # Throughout: nothing shown good was stale.
    stale = w.stale(t_start)
    assert not stale, "good values older than %d ms: %s" % (MAX_AGE_MS, stale[:3])
    print("kill -9 in turn:", report)


# -------------------------------------------------------------------- Redis


def _instances(docs, site, ioservers, devices, channels, brokers):
    """Every state key README documents for these running processes."""
    names = {"site": [site], "io": ioservers, "dev": devices, "ch": channels, "b": brokers}
    out = {}
    for d in docs:
        if d.history:
            continue
        keys = [""]
        for part in re.split(r"(<[a-z]+>)", d.pattern):
            vals = names[part[1:-1]] if part.startswith("<") else [part]
            keys = [k + v for k in keys for v in vals]
        for k in keys:
            out[k] = d
    return out


def test_redis_outage_30s_under_load(env):
    s = Site(env).start()
    wait_until(lambda: s.offers_at("io1"), 10, what="io1 best offer")
    c = s.pyclient()
    ev = AlarmEvents(s.alarm["publish"])
    env.own(ev)
    wait_until(lambda: "L1.HI" in s.active(), 10, what="L1.HI active")
    port = env.redis.port
    t0 = time.monotonic()
    env.redis.stop()
    time.sleep(5.0)
    # io1 dies while Redis is away: io2 takes its devices.
    t_kill = time.monotonic()
    wall_kill = wall_ms()
    s.kill("io1")
    for n in TAGS:
        c.wait(lambda n=n: [u for u in c.history(n, t_kill) if good(u) and u.ts > wall_kill
                            and any(b.quality != Q("GOOD") for b in c.history(n, t_kill))],
               2 * PING_MS / 1000.0 + 0.5, "%s from io2 without Redis" % n)
        dip = [u.t for u in c.history(n, t_kill) if not good(u)][0]
        late = [u for u in c.history(n, dip) if good(u) and u.ts <= wall_kill]
        assert not late, "%s: read by io1 before its death, shown good after: %s" % (n, late)
    failover_s = max(min(u.t for u in c.history(n, t_kill) if good(u)
                         and any(b.quality != Q("GOOD") and b.t <= u.t
                                 for b in c.history(n, t_kill))) for n in TAGS) - t_kill
    # Alarms are raised and published meanwhile: io1 stopped answering, and
    # a limit crossed.
    wait_until(lambda: ev.raised("io1.COMM", t_kill), 4 * PING_MS / 1000.0 + 1,
               what="io1.COMM raised on the alarm PUB")
    t_set = time.monotonic()
    s.procs["devsim"].ok("set L2 80")
    wait_until(lambda: ev.raised("L2.HI", t_set), 3, what="L2.HI raised on the alarm PUB")
    # The rest of the 30 s.
    time.sleep(max(0.0, t0 + 30.0 - time.monotonic()))
    t_up = time.monotonic()
    # Values flowed the whole time (but for the failover itself), fresh.
    for n in TAGS:
        stale = [u for u in c.history(n, t0) if good(u) and age_ms(u) > MAX_AGE_MS]
        assert not stale, "%s: stale values shown good: %s" % (n, stale[:3])
        times = [u.t for u in c.history(n, t0) if good(u)]
        gap = max(max_gap(times, t0 + 0.2, t_kill), max_gap(times, t_kill + failover_s, t_up))
        assert gap <= MAX_AGE_MS / 1000.0, "%s: no good value for %.2f s while Redis was away" % (
            n, gap)
    assert all(s.procs[p].alive() for p in ("resolver", "io2", "b1", "alarm", "devsim"))

    # Redis comes back empty on its port: the state is whole again within 2 s.
    env.start_redis(port)
    t_back = time.monotonic()
    r = env.redis.client
    want = _instances(readme_keys(env.site_name), env.site_name, ["io2"], ["d1", "d2"],
                      ["net"], ["b1"])
    assert len(want) >= 10, sorted(want)

    def whole():
        missing = sorted(k for k in want if not r.exists(k))
        if missing:
            return None
        bad = [b for k, d in want.items() for b in check_key(r, d, k)]
        return "ok" if not bad else None
    try:
        wait_until(whole, 2.0, interval=0.05, what="every state key back")
    except AssertionError:
        missing = sorted(k for k in want if not r.exists(k))
        bad = [b for k, d in want.items() for b in check_key(r, d, k)]
        raise AssertionError("2 s after Redis came back: missing %s; wrong %s" % (missing, bad))
    whole_s = time.monotonic() - t_back
    assert s.offer("d1") == "io2" and s.offer("d2") == "io2"
    assert (r.hget(s.key("alarm:active"), "L2.HI") or "").startswith("UNACK_ACTIVE")
    assert (r.hget(s.key("alarm:active"), "io1.COMM") or "").startswith("UNACK_ACTIVE")
    print("Redis outage: failover %.2f s, keys whole %.2f s after Redis returned"
          % (failover_s, whole_s))


# -------------------------------------------------------------- partitions


@needs_root
def test_partition_ioserver_from_devices(env):
    s = Site(env, public=True)
    s.start(wrap={"io1": ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")})
    wait_until(lambda: s.offers_at("io1"), 10, what="io1 best offer")
    c = s.pyclient()
    time.sleep(0.5)
    ports = "%d,%d" % (s.ports, s.ports + 1)
    t_cut = time.monotonic()
    wall_cut = wall_ms()
    rule = env.own(Rule("-m", "multiport", "--dports", ports, "-m", "owner",
                        "--uid-owner", "65534"))
    detect = MAX_READ_TIMEOUTS * (SCAN_MS + REPLY_DELAY_MS) / 1000.0 + 1.0
    wait_until(lambda: s.offers_at("io2"), detect, interval=0.02,
               what="d1 and d2 moved to io2")
    moved = time.monotonic() - t_cut
    for n in TAGS:
        c.wait(lambda n=n: [u for u in c.history(n, t_cut) if good(u) and u.ts > wall_cut], detect,
               "%s from io2" % n)
        dip = [u.t for u in c.history(n, t_cut) if not good(u)]
        assert dip, "%s: no bad quality shown at the move" % n
        late = [u for u in c.history(n, dip[0]) if good(u) and u.ts <= wall_cut]
        assert not late, "%s: read before the cut, shown good after the dip: %s" % (n, late)
    shown = max(min(u.t for u in c.history(n, t_cut) if good(u) and u.ts > wall_cut)
                for n in TAGS) - t_cut
    assert shown <= detect, shown
    # io1 says so too (its device keys are written at its next ping)
    wait_until(lambda: s.hget("ioserver:io1:device:d1", "state") not in (None, "online"),
               PING_MS / 1000.0 + 0.5, what="io1's key: d1 not online")
    # Healed: io1 reconnects and takes them back, make before break.
    rule.stop()
    t_heal = time.monotonic()
    heal = RECONNECT_MIN_MS * 1.25 / 1000.0 + 2.0
    wait_until(lambda: s.offers_at("io1"), heal, interval=0.02, what="io1 takes them back")
    back = time.monotonic() - t_heal
    time.sleep(1.0)
    dips = [(n, u) for n in TAGS for u in c.history(n, t_heal) if not good(u)]
    assert not dips, "fail-back dipped: %s" % dips[:3]
    assert all(s.procs[p].alive() for p in s.procs)
    print("io1 cut from its devices: moved in %.2f s, good from io2 at the client in %.2f s "
          "(bound %.2f s); healed: back at io1 in %.2f s (bound %.2f s)"
          % (moved, shown, detect, back, heal))


@needs_root
def test_partition_broker_from_resolver(env):
    s = Site(env, public=True)
    s.start(wrap={"b1": ("setpriv", "--reuid=65533", "--regid=65533", "--clear-groups")})
    wait_until(lambda: s.offers_at("io1") and s.hget("resolver", "brokers") == "1", 10,
               what="b1 known to the resolver")
    c = s.pyclient()
    wait_until(lambda: s.hget("broker:b1", "resolver") == "up", 5, what="b1: resolver up")
    res_port = int(s.resolver_ep.rsplit(":", 1)[1])
    t_cut = time.monotonic()
    rule = env.own(Rule("--dport", str(res_port), "-m", "owner", "--uid-owner", "65533"))
    bound = (3 * PING_MS + PING_MS + 250) / 1000.0 + 0.3
    wait_until(lambda: s.hget("resolver", "brokers") == "0", bound, interval=0.02,
               what="the resolver forgets b1")
    forgot = time.monotonic() - t_cut
    wait_until(lambda: s.hget("broker:b1", "resolver") == "down", bound, interval=0.02,
               what="b1 says resolver down")
    down = time.monotonic() - t_cut
    time.sleep(1.0)
    t_mid = time.monotonic()
    # The page did not notice.
    for n in TAGS:
        assert all(good(u) for u in c.history(n, t_cut)), c.history(n, t_cut)
        times = [u.t for u in c.history(n, t_cut)]
        assert max_gap(times, t_cut + 0.2, t_mid) <= MAX_AGE_MS / 1000.0, n
        stale = [u for u in c.history(n, t_cut) if age_ms(u) > MAX_AGE_MS]
        assert not stale, "%s: stale values shown good: %s" % (n, stale[:3])
    # Healed: they find each other again.
    rule.stop()
    t_heal = time.monotonic()
    wait_until(lambda: s.hget("broker:b1", "resolver") == "up"
               and s.hget("resolver", "brokers") == "1", 10, interval=0.02,
               what="b1 and the resolver again")
    healed = time.monotonic() - t_heal
    # And a failover still reaches the page through them.
    t_kill = time.monotonic()
    s.kill("io1")
    for n in TAGS:
        c.wait(lambda n=n: [u for u in c.history(n, t_kill) if good(u)
                            and any(not good(b) for b in c.history(n, t_kill))],
               2 * PING_MS / 1000.0 + 0.5, "%s from io2 after the partition" % n)
    print("b1 cut from the resolver: forgotten in %.2f s, resolver down at b1 in %.2f s "
          "(bound %.2f s); healed in %.2f s" % (forgot, down, bound, healed))
