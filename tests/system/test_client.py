"""System tests of the broker client (common/src/scada_client.c) through
scadactl get, watch and write, against a broker of our own in Python.

The broker here is a pyzmq ROUTER that speaks the client protocol of
proto/scada.proto with Python protobuf code generated from the same file: it
records every request scadactl sends and answers exactly what a test wants,
so the tests check both sides: what arrives at the broker, and what scadactl
makes of the answers.

- test_get_*: one SUBSCRIBE carries every name; values (integer and double),
  qualities, reasons and timestamps (base_ts + ts) are printed as sent, in
  text and JSON; unknown names are bad-not-found; values that come later in
  UPDATES are waited for; a tag never answered is bad-no-comm, exit 1;
  --endpoint overrides the site's broker.
- test_watch_*: one line (or JSON object) per change, --count and --duration;
  a table on a terminal.
- test_heartbeats_*: HEARTBEAT about every client_heartbeat_ms on an idle
  link, never right after a request.
- test_broker_silence_*: 3 x heartbeat of silence is "broker lost": every tag
  bad-no-comm with its last value, and the page subscribed again, by name, on
  a new connection, which a new broker on the same endpoint answers.
- test_write_*: ok, refused, ERROR; bad values exit 2 and send nothing.
- test_no_broker: exit 1 with a message naming the endpoint, within --timeout.
- test_malformed_*: garbage from the broker is counted and logged, never a
  crash.
Tag ids replacing names on a re-subscribed page are checked by the unit test
of the library (tests/unit/test_scada_client.c), where a page can change.
"""
import calendar
import json
import os
import pty
import select
import signal
import subprocess
import threading
import time

import pytest

import scada_helpers as H
from scada_helpers import now_ms, wait_until

HB_MS = 200  # client_heartbeat_ms of the test sites
TAGS = ["T.INT", "T.NUM", "T.BAD", "T.OLD", "T.RO", "T.LATE"]


# ------------------------------------------------------------------ fixtures


@pytest.fixture
def env(pb, tmp_path, bin_dir, free_ports):
    """Processes and fake brokers of one test, all stopped at the end. No
    Redis: scadactl get/watch/write through a broker do not use it."""
    e = H.Env(tmp_path, bin_dir, free_ports)
    try:
        yield e
    finally:
        errors = e.cleanup()
        assert not errors, errors


def client_site(env, endpoint, heartbeat_ms=HB_MS, filename="site.yaml", **broker):
    """A site whose broker b1 is at `endpoint`; its I/O server never runs."""
    io = env.ioserver_cfg()
    dev = {"name": "d1", "address": "127.0.0.1:%d" % env.free_ports(1), "servers": ["io1"],
           "tags": [{"name": t, "address": "hr:%d" % i} for i, t in enumerate(TAGS)]}
    b = {"name": "b1", "endpoint": endpoint, "client_heartbeat_ms": heartbeat_ms}
    b.update(broker)
    return H.write_site(env.tmp / filename, env.site_name, 6379, [io],
                        [{"name": "ch", "type": "network", "devices": [dev]}], brokers=[b])


def endpoint(env):
    return "tcp://127.0.0.1:%d" % env.free_ports(1)


def iso(ms):
    """The timestamp as scadactl prints it."""
    sec, milli = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + ".%03dZ" % milli


def parse_iso(text):
    head, frac = text[:-1].split(".")
    return calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S")) * 1000 + int(frac)


def ctl(env, site, *args, timeout=20):
    return env.scadactl(site, *args, timeout=timeout)


def lines_of(r):
    return {line.split(" ")[0]: line.split(" ") for line in r.stdout.splitlines()}


# --------------------------------------------------------------- the broker


class FakeBroker:
    """The client protocol on a pyzmq ROUTER, in a thread of its own.

    tags: {name: dict(id=, integer= | number=, quality=, ts=, reason=)}; a tag
    with only an id is known but has no value yet. SUBSCRIBE is answered with
    SUBSCRIBED: one id per name (0: unknown), and an Update per known value
    (ts relative to base_ts). WRITE is answered from write_results: {name:
    None (ok) | "text" (WRITTEN with that error) | ("ERROR", "text")}.
    heartbeat_ms: send HEARTBEAT to every client when it sent it nothing for
    that long. silent: receive and record, answer nothing, send nothing.
    on_subscribe(fake, peer, req) replaces the SUBSCRIBE answer."""

    def __init__(self, env, endpoint, tags=None, heartbeat_ms=0, write_results=None,
                 on_subscribe=None):
        import zmq
        self.endpoint = endpoint
        self.tags = dict(tags or {})
        self.base_ts = now_ms()
        self.heartbeat_ms = heartbeat_ms
        self.write_results = dict(write_results or {})
        self.on_subscribe = on_subscribe
        self.silent = False
        self.lock = threading.Lock()
        self.requests = []  # (monotonic time, peer, ClientRequest)
        self.undecodable = []
        self._out = []  # (due monotonic time, peer, [frames])
        self._last_tx = {}
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(endpoint)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        env.own(self)

    # -- what arrived

    def of_kind(self, kind):
        with self.lock:
            return [(t, p, r) for t, p, r in self.requests if r.kind == kind]

    def subscribes(self):
        return [r for _, _, r in self.of_kind(H.pb.ClientRequest.SUBSCRIBE)]

    # -- sending (from the broker's thread: ZeroMQ sockets stay in one thread)

    def send(self, peer, msg, delay=0.0, frames=None):
        """Send msg (a BrokerMsg or raw bytes) to peer after `delay` seconds;
        `frames` instead of msg sends those frames as one message."""
        if frames is None:
            frames = [msg if isinstance(msg, bytes) else msg.SerializeToString()]
        with self.lock:
            self._out.append((time.monotonic() + delay, peer, frames))

    def update(self, name):
        spec = self.tags[name]
        u = H.pb.Update(tag_id=spec["id"])
        for key in ("integer", "number", "quality", "ts", "reason"):
            if key in spec:
                setattr(u, key, spec[key])
        return u

    def has_value(self, name):
        return any(k in self.tags[name] for k in ("integer", "number", "quality"))

    def subscribed(self, req, names=None):
        """The SUBSCRIBED answering req, with the values of `names` (default:
        every requested name with a value)."""
        ids = [self.tags[n]["id"] if n in self.tags else 0 for n in req.names]
        m = H.pb.BrokerMsg(kind=H.pb.BrokerMsg.SUBSCRIBED, id=req.id, page=req.page,
                           tag_ids=ids, base_ts=self.base_ts)
        by_id = {s["id"]: n for n, s in self.tags.items()}
        wanted = list(req.names) + [by_id[i] for i in req.tag_ids if i in by_id]
        for n in wanted:
            if n in self.tags and self.has_value(n) and (names is None or n in names):
                m.updates.append(self.update(n))
        return m

    def updates(self, names):
        m = H.pb.BrokerMsg(kind=H.pb.BrokerMsg.UPDATES, base_ts=self.base_ts)
        for n in names:
            m.updates.append(self.update(n))
        return m

    def _answer(self, peer, req):
        pb = H.pb
        if req.kind == pb.ClientRequest.SUBSCRIBE:
            if self.on_subscribe:
                self.on_subscribe(self, peer, req)
            else:
                self.send(peer, self.subscribed(req))
        elif req.kind == pb.ClientRequest.WRITE:
            name = req.names[0] if req.names else ""
            result = self.write_results.get(name, "no such tag")
            if isinstance(result, tuple):
                self.send(peer, pb.BrokerMsg(kind=pb.BrokerMsg.ERROR, id=req.id, error=result[1]))
            elif result is None:
                self.send(peer, pb.BrokerMsg(kind=pb.BrokerMsg.WRITTEN, id=req.id))
            else:
                self.send(peer, pb.BrokerMsg(kind=pb.BrokerMsg.WRITTEN, id=req.id, error=result))
        elif req.kind == pb.ClientRequest.UNSUBSCRIBE:
            self.send(peer, pb.BrokerMsg(kind=pb.BrokerMsg.UNSUBSCRIBED, id=req.id,
                                         page=req.page))

    def _run(self):
        try:
            while not self._stop.is_set():
                if self.sock.poll(10):
                    frames = self.sock.recv_multipart()
                    t = time.monotonic()
                    peer = frames[0]
                    req = H.pb.ClientRequest()
                    try:
                        assert len(frames) == 2, "%d frames" % len(frames)
                        req.ParseFromString(frames[1])
                    except Exception as exc:
                        with self.lock:
                            self.undecodable.append(repr(exc))
                        continue
                    with self.lock:
                        self.requests.append((t, peer, req))
                        self._last_tx.setdefault(peer, 0.0)
                    if not self.silent:
                        self._answer(peer, req)
                now = time.monotonic()
                with self.lock:
                    due = [o for o in self._out if o[0] <= now]
                    self._out = [o for o in self._out if o[0] > now]
                    peers = list(self._last_tx)
                for _, peer, frames in due:
                    if not self.silent:
                        self.sock.send_multipart([peer] + frames)
                        self._last_tx[peer] = now
                if self.heartbeat_ms and not self.silent:
                    for peer in peers:
                        if now - self._last_tx[peer] >= self.heartbeat_ms / 1000.0:
                            hb = H.pb.BrokerMsg(kind=H.pb.BrokerMsg.HEARTBEAT)
                            self.sock.send_multipart([peer, hb.SerializeToString()])
                            self._last_tx[peer] = now
        finally:
            self.sock.close()

    def stop(self):
        if not self._stop.is_set():
            self._stop.set()
            self.thread.join(5)
            self.ctx.term()


class Live:
    """A scadactl running in the background, its stdout collected line by line."""

    def __init__(self, env, site, *args):
        self.proc = subprocess.Popen([env.bin("scadactl"), "--config", site] + list(args),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     errors="replace", bufsize=1)
        self.lines = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        self.stderr = ""
        env.own(self)

    def _read(self):
        for line in self.proc.stdout:
            with self.lock:
                self.lines.append(line.rstrip("\n"))

    def output(self):
        with self.lock:
            return list(self.lines)

    def wait_line(self, pred, timeout, since=0, what="a line"):
        def find():
            for i, line in enumerate(self.output()[since:]):
                if pred(line):
                    return since + i + 1
            if self.proc.poll() is not None:
                raise AssertionError("scadactl exited with %r; output %r, stderr %r"
                                     % (self.proc.returncode, self.output(),
                                        self.proc.stderr.read()))
            return None
        return wait_until(find, timeout, what=what)

    def stop(self, sig=signal.SIGINT):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.thread.join(5)
        if not self.proc.stderr.closed:
            self.stderr = self.proc.stderr.read()
            self.proc.stderr.close()
        return self.proc.returncode


def table():
    """Tags of the test broker: every kind of value and quality."""
    Q = H.pb
    return {
        "T.INT": {"id": 5, "integer": 42},
        "T.NUM": {"id": 6, "number": 3.25, "ts": -1500},
        "T.BAD": {"id": 7, "quality": Q.BAD_DEVICE, "reason": "short reply", "ts": 20},
        "T.OLD": {"id": 8, "integer": -7, "quality": Q.BAD_NO_COMM, "reason": "device offline",
                  "ts": -60000},
        "T.RO": {"id": 9, "integer": 123456789, "quality": Q.UNCERTAIN},
    }


# ---------------------------------------------------------------------- get


def test_get_one_subscribe_and_exact_values(env):
    ep = endpoint(env)
    site = client_site(env, ep)
    fake = FakeBroker(env, ep, table())
    names = ["T.INT", "T.NUM", "T.BAD", "T.OLD", "T.RO", "NO.SUCH"]
    r = ctl(env, site, "get", *names)
    assert r.returncode == 0, (r.stdout, r.stderr)
    # one SUBSCRIBE with every name, in order, by name
    subs = fake.subscribes()
    assert len(subs) == 1, subs
    req = subs[0]
    assert list(req.names) == names and list(req.tag_ids) == []
    assert req.HasField("page") and req.HasField("id") and req.id != 0
    assert req.client.startswith("scadactl")
    base = fake.base_ts
    out = lines_of(r)
    assert [line.split(" ")[0] for line in r.stdout.splitlines()] == names
    assert out["T.INT"] == ["T.INT", "42", "good", iso(base)]
    assert out["T.NUM"] == ["T.NUM", "3.25", "good", iso(base - 1500)]
    assert out["T.BAD"] == ["T.BAD", "-", "bad-device", iso(base + 20)]
    assert out["T.OLD"] == ["T.OLD", "-7", "bad-no-comm", iso(base - 60000)]
    assert out["T.RO"] == ["T.RO", "123456789", "uncertain", iso(base)]
    assert out["NO.SUCH"] == ["NO.SUCH", "-", "bad-not-found", "-"]

    # the same as JSON, with the reasons
    r = ctl(env, site, "--json", "get", *names)
    assert r.returncode == 0, (r.stdout, r.stderr)
    objs = {o["tag"]: o for o in map(json.loads, r.stdout.splitlines())}
    assert objs["T.INT"]["value"] == 42 and objs["T.INT"]["quality"] == "good"
    assert parse_iso(objs["T.INT"]["timestamp"]) == base
    assert objs["T.NUM"]["value"] == 3.25
    assert objs["T.BAD"] == {"tag": "T.BAD", "value": None, "quality": "bad-device",
                             "timestamp": iso(base + 20), "reason": "short reply"}
    assert objs["T.OLD"]["value"] == -7 and objs["T.OLD"]["reason"] == "device offline"
    assert objs["NO.SUCH"]["quality"] == "bad-not-found" and objs["NO.SUCH"]["value"] is None
    assert len(fake.subscribes()) == 2
    assert not fake.undecodable


def test_get_waits_for_late_values(env):
    """Values the broker sends after SUBSCRIBED, in UPDATES, are waited for;
    a tag that never gets one is bad-no-comm and the exit code 1."""
    ep = endpoint(env)
    site = client_site(env, ep)
    tags = table()
    tags["T.LATE"] = {"id": 11, "number": 0.5, "ts": 3}

    def later(fake, peer, req):
        fake.send(peer, fake.subscribed(req, names=["T.INT"]))
        fake.send(peer, fake.updates(["T.LATE"]), delay=0.4)

    fake = FakeBroker(env, ep, tags, on_subscribe=later)
    t0 = time.monotonic()
    r = ctl(env, site, "get", "T.INT", "T.LATE")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert time.monotonic() - t0 >= 0.35
    out = lines_of(r)
    assert out["T.LATE"] == ["T.LATE", "0.5", "good", iso(fake.base_ts + 3)]
    assert out["T.INT"][1:3] == ["42", "good"]

    # T.NUM is known to the broker but never gets a value
    r = ctl(env, site, "--timeout", "600", "--json", "get", "T.INT", "T.NUM")
    assert r.returncode == 1, (r.stdout, r.stderr)
    objs = {o["tag"]: o for o in map(json.loads, r.stdout.splitlines())}
    assert objs["T.INT"]["quality"] == "good"
    assert objs["T.NUM"]["quality"] == "bad-no-comm" and objs["T.NUM"]["value"] is None
    assert "no value" in objs["T.NUM"]["reason"]


def test_get_endpoint_and_broker_options(env):
    """--endpoint overrides the site's broker; --broker picks one by name."""
    ep = endpoint(env)
    nobody = endpoint(env)
    site = client_site(env, nobody)
    fake = FakeBroker(env, ep, table())
    r = ctl(env, site, "--endpoint", ep, "get", "T.INT")
    assert r.returncode == 0 and r.stdout.split()[1] == "42", (r.stdout, r.stderr)
    r = ctl(env, site, "get", "--broker", "b1", "--endpoint", ep, "T.INT")  # after the command
    assert r.returncode == 0, (r.stdout, r.stderr)
    r = ctl(env, site, "--broker", "b7", "get", "T.INT")
    assert r.returncode == 2 and "b7" in r.stderr and "b1" in r.stderr, r
    assert len(fake.subscribes()) == 2


def test_no_broker(env):
    """Nothing at the broker's endpoint: exit 1 with a message naming it,
    within the timeout, for get, write and watch."""
    ep = endpoint(env)
    site = client_site(env, ep)
    want = "no answer from broker b1 at %s: is scada-broker running?" % ep
    for args, rc in ((["--timeout", "500", "get", "T.INT", "T.NUM"], 1),
                     (["--timeout", "500", "--json", "get", "T.INT"], 1),
                     (["--timeout", "500", "write", "T.INT", "1"], 1),
                     (["--timeout", "300", "watch", "--duration", "800", "T.INT"], 1)):
        t0 = time.monotonic()
        r = ctl(env, site, *args)
        took = time.monotonic() - t0
        assert r.returncode == rc, (args, r.returncode, r.stdout, r.stderr)
        assert want in r.stderr, (args, r.stderr)
        assert took < 3, (args, took)
        if "get" in args and "--json" not in args:
            for line in r.stdout.splitlines():
                assert line.split(" ")[1:4] == ["-", "bad-no-comm", "-"], line
    # an endpoint that is not one is bad usage
    r = ctl(env, site, "--endpoint", "nowhere", "get", "T.INT")
    assert r.returncode == 2 and "nowhere" in r.stderr, r


# -------------------------------------------------------------------- watch


def test_watch_count_prints_changes(env):
    ep = endpoint(env)
    site = client_site(env, ep)
    tags = table()

    def then_changes(fake, peer, req):
        fake.send(peer, fake.subscribed(req))
        for k, value in enumerate((43, 44)):
            fake.tags["T.INT"] = {"id": 5, "integer": value, "ts": 100 * (k + 1)}
            fake.send(peer, fake.updates(["T.INT"]), delay=0.2 * (k + 1))
        # a coalesced message: two tags at once
        fake.tags["T.NUM"] = {"id": 6, "number": 9.5, "ts": 7}
        fake.tags["T.INT"] = {"id": 5, "integer": 45, "quality": H.pb.UNCERTAIN, "ts": 300}
        fake.send(peer, fake.updates(["T.INT", "T.NUM"]), delay=0.6)

    fake = FakeBroker(env, ep, tags, on_subscribe=then_changes)
    r = ctl(env, site, "watch", "--count", "5", "T.INT", "T.NUM")
    assert r.returncode == 0, (r.stdout, r.stderr)
    got = [line.split(" ") for line in r.stdout.splitlines()]
    base = fake.base_ts
    assert got == [["T.INT", "42", "good", iso(base)],
                   ["T.NUM", "3.25", "good", iso(base - 1500)],
                   ["T.INT", "43", "good", iso(base + 100)],
                   ["T.INT", "44", "good", iso(base + 200)],
                   ["T.INT", "45", "uncertain", iso(base + 300)]], r.stdout
    assert len(fake.subscribes()) == 1

    # JSON: one object per change; --count stops in the middle of a message
    r = ctl(env, site, "--json", "watch", "--count", "6", "T.INT", "T.NUM")
    assert r.returncode == 0, (r.stdout, r.stderr)
    objs = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(objs) == 6
    assert [o["value"] for o in objs[2:]] == [43, 44, 45, 9.5]
    assert objs[4]["quality"] == "uncertain"


def test_watch_duration_and_terminal_table(env):
    """--duration ends watch; on a terminal it draws a table in place."""
    ep = endpoint(env)
    site = client_site(env, ep)
    FakeBroker(env, ep, table(), heartbeat_ms=HB_MS)
    t0 = time.monotonic()
    r = ctl(env, site, "watch", "--duration", "700", "T.INT")
    assert r.returncode == 0 and 0.6 < time.monotonic() - t0 < 5, r
    assert r.stdout.splitlines()[0].split(" ")[:3] == ["T.INT", "42", "good"]

    master, slave = pty.openpty()
    proc = subprocess.Popen([env.bin("scadactl"), "--config", site, "watch", "--duration", "1500",
                             "T.INT", "T.OLD", "NO.SUCH"], stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    screen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 5)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    assert proc.wait(10) == 0
    os.close(master)
    text = screen.decode("utf-8", "replace")
    assert text.count("\x1b[H\x1b[2J") >= 2, text  # redrawn in place
    last = text.split("\x1b[H\x1b[2J")[-1]
    assert "connected" in last and ep in last
    rows = {line.split()[0]: line.split() for line in last.splitlines() if line.startswith(("T.", "NO."))}
    assert rows["T.INT"][1:3] == ["42", "good"]
    assert rows["T.OLD"][1:3] == ["-7", "bad-no-comm"] and "device offline" in " ".join(rows["T.OLD"])
    assert rows["NO.SUCH"][2] == "bad-not-found"


# --------------------------------------------------------------- heartbeats


def test_heartbeats_on_an_idle_link(env):
    """The client sends HEARTBEAT when it has sent nothing for
    client_heartbeat_ms: about every 200 ms here, the first one no sooner
    than 200 ms after the SUBSCRIBE. The broker's heartbeats keep the link."""
    ep = endpoint(env)
    site = client_site(env, ep)
    fake = FakeBroker(env, ep, table(), heartbeat_ms=HB_MS)
    r = ctl(env, site, "watch", "--duration", "2500", "T.INT")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "lost" not in r.stdout
    (t_sub, _, _), = fake.of_kind(H.pb.ClientRequest.SUBSCRIBE)
    beats = [t for t, _, _ in fake.of_kind(H.pb.ClientRequest.HEARTBEAT)]
    assert 8 <= len(beats) <= 13, beats
    assert beats[0] - t_sub >= 0.18, beats[0] - t_sub
    gaps = sorted(b - a for a, b in zip(beats, beats[1:]))
    assert gaps[0] >= 0.15, gaps
    assert 0.18 <= gaps[len(gaps) // 2] <= 0.27, gaps
    # every request of one connection; the name went with the first
    assert len({p for _, p, _ in fake.requests}) == 1


# ---------------------------------------------------------- broker silence


def test_broker_silence_reports_lost_and_resubscribes(env):
    ep = endpoint(env)
    site = client_site(env, ep)
    fake1 = FakeBroker(env, ep, table(), heartbeat_ms=HB_MS)
    live = Live(env, site, "watch", "T.INT", "T.NUM")
    n = live.wait_line(lambda l: l.startswith("T.NUM 3.25 good"), 5, what="T.NUM from broker 1")
    (_, peer1, _), = fake1.of_kind(H.pb.ClientRequest.SUBSCRIBE)

    # broker 1 goes silent: after 3 x 200 ms the link is lost, every tag is
    # bad-no-comm keeping its value, and the page goes out again, by name,
    # on a new connection
    t0 = time.monotonic()
    fake1.silent = True
    n = live.wait_line(lambda l: l.startswith("# broker-lost b1 at %s" % ep), 5,
                       since=n, what="broker lost")
    assert 0.5 <= time.monotonic() - t0 <= 2.0
    live.wait_line(lambda l: l.startswith("T.INT 42 bad-no-comm"), 2, since=n - 1,
                   what="T.INT bad-no-comm keeping 42")
    live.wait_line(lambda l: l.startswith("T.NUM 3.25 bad-no-comm"), 2, since=n - 1,
                   what="T.NUM bad-no-comm keeping 3.25")
    again = wait_until(lambda: [(p, r) for _, p, r in fake1.of_kind(H.pb.ClientRequest.SUBSCRIBE)
                                if p != peer1], 3, what="a SUBSCRIBE on a new connection")
    assert sorted(again[0][1].names) == ["T.INT", "T.NUM"] and not again[0][1].tag_ids

    # a new broker on the same endpoint: the client finds it on its own
    fake1.stop()
    tags = table()
    tags["T.INT"] = {"id": 50, "integer": 10}
    tags["T.NUM"] = {"id": 60, "number": 20.5}
    fake2 = FakeBroker(env, ep, tags, heartbeat_ms=HB_MS)
    n = live.wait_line(lambda l: l.startswith("# broker-back b1"), 10, since=n,
                       what="broker back")
    live.wait_line(lambda l: l.startswith("T.INT 10 good"), 3, since=n - 1, what="T.INT = 10")
    live.wait_line(lambda l: l.startswith("T.NUM 20.5 good"), 3, since=n - 1, what="T.NUM = 20.5")
    req = fake2.subscribes()[0]
    assert sorted(req.names) == ["T.INT", "T.NUM"] and not req.tag_ids
    assert req.client.startswith("scadactl")

    # values keep flowing over the new link
    fake2.tags["T.INT"] = {"id": 50, "integer": 11}
    (_, peer2, _) = fake2.of_kind(H.pb.ClientRequest.SUBSCRIBE)[0]
    fake2.send(peer2, fake2.updates(["T.INT"]))
    live.wait_line(lambda l: l.startswith("T.INT 11 good"), 3, since=n, what="T.INT = 11")
    assert live.stop() == 0, live.stderr
    assert "lost" not in live.output()[-1]


# -------------------------------------------------------------------- write


def test_write_results(env):
    ep = endpoint(env)
    site = client_site(env, ep)
    fake = FakeBroker(env, ep, table(), write_results={
        "T.INT": None, "T.RO": "read-only tag", "T.BAD": ("ERROR", "broker overloaded")})
    r = ctl(env, site, "write", "T.INT", "-2.5")
    assert r.returncode == 0 and r.stdout == "T.INT ok\n", (r.stdout, r.stderr)
    (_, _, req), = fake.of_kind(H.pb.ClientRequest.WRITE)
    assert list(req.names) == ["T.INT"] and req.value == -2.5 and req.id != 0
    r = ctl(env, site, "write", "T.INT", "on")
    assert r.returncode == 0, r
    assert fake.of_kind(H.pb.ClientRequest.WRITE)[-1][2].value == 1.0
    r = ctl(env, site, "write", "T.RO", "1")
    assert r.returncode == 1 and r.stdout == "T.RO error: read-only tag\n", (r.stdout, r.stderr)
    r = ctl(env, site, "write", "T.BAD", "1")
    assert r.returncode == 1 and r.stdout == "T.BAD error: broker overloaded\n", r
    r = ctl(env, site, "write", "NO.SUCH", "1")
    assert r.returncode == 1 and "no such tag" in r.stdout, r
    r = ctl(env, site, "--json", "write", "T.INT", "3")
    assert r.returncode == 0 and json.loads(r.stdout) == {"tag": "T.INT", "result": "ok"}, r
    r = ctl(env, site, "--json", "write", "T.RO", "3")
    assert r.returncode == 1
    assert json.loads(r.stdout) == {"tag": "T.RO", "result": "error", "error": "read-only tag"}
    # bad usage: exit 2, nothing sent
    sent = len(fake.requests)
    for args in (["write", "T.INT", "abc"], ["write", "T.INT"], ["write"],
                 ["write", "T.INT", "1", "2"]):
        r = ctl(env, site, *args)
        assert r.returncode == 2, (args, r)
    assert "abc" in ctl(env, site, "write", "T.INT", "abc").stderr
    assert len(fake.requests) == sent


def test_write_unanswered(env):
    """A broker that takes the write and never answers: exit 1 after --timeout."""
    ep = endpoint(env)
    site = client_site(env, ep)
    fake = FakeBroker(env, ep, table(), heartbeat_ms=HB_MS)
    fake._answer = lambda peer, req: None  # records requests, answers none
    t0 = time.monotonic()
    r = ctl(env, site, "--timeout", "700", "write", "T.INT", "1")
    assert r.returncode == 1 and "T.INT error: no answer from broker" in r.stdout, r
    assert 0.6 <= time.monotonic() - t0 < 4
    assert len(fake.of_kind(H.pb.ClientRequest.WRITE)) == 1


# ---------------------------------------------------------------- malformed


def _raw_update_bad_quality(tag_id):
    """BrokerMsg UPDATES with one Update whose quality is 9 (not a Quality)."""
    update = bytes([0x08, tag_id, 0x20, 0x09])
    return bytes([0x08, 0x02, 0x2A, len(update)]) + update


def test_malformed_frames_do_not_crash(env):
    """Garbage before the real answer: counted, logged, dropped; the values
    that follow are right."""
    ep = endpoint(env)
    site = client_site(env, ep)

    def garbage_first(fake, peer, req):
        pb = H.pb
        hb = pb.BrokerMsg(kind=pb.BrokerMsg.HEARTBEAT).SerializeToString()
        fake.send(peer, b"\xff\xff\xff\x01\x02")
        fake.send(peer, None, frames=[hb, hb])  # two frames
        fake.send(peer, b"")  # no kind
        fake.send(peer, _raw_update_bad_quality(5))
        fake.send(peer, bytes(range(256)) * 20)
        bad = fake.subscribed(req)
        bad.tag_ids.append(77)  # one id too many
        fake.send(peer, bad)
        both = pb.BrokerMsg(kind=pb.BrokerMsg.UPDATES)
        both.updates.append(pb.Update(tag_id=5, integer=1, number=2.0))
        fake.send(peer, both)
        fake.send(peer, pb.BrokerMsg(kind=pb.BrokerMsg.ERROR, id=0, error="cannot decode"))
        fake.send(peer, fake.subscribed(req))

    FakeBroker(env, ep, table(), on_subscribe=garbage_first)
    r = ctl(env, site, "get", "T.INT", "T.NUM", "NO.SUCH")
    assert r.returncode == 0, (r.stdout, r.stderr)
    out = lines_of(r)
    assert out["T.INT"][1:3] == ["42", "good"]
    assert out["T.NUM"][1:3] == ["3.25", "good"]
    assert out["NO.SUCH"][2] == "bad-not-found"
    assert "malformed" in r.stderr, r.stderr
    assert "cannot decode" in r.stderr, r.stderr

    # the same mid-stream in watch: still running, still right
    ep2 = endpoint(env)
    site2 = client_site(env, ep2, filename="site2.yaml")
    fake2 = FakeBroker(env, ep2, table(), heartbeat_ms=HB_MS)
    live = Live(env, site2, "watch", "T.INT")
    n = live.wait_line(lambda l: l.startswith("T.INT 42 good"), 5, what="T.INT")
    (_, peer, _) = fake2.of_kind(H.pb.ClientRequest.SUBSCRIBE)[0]
    for junk in (b"\x00" * 100, _raw_update_bad_quality(5), b"\x08\x02\x2a\x7f"):
        fake2.send(peer, junk)
    fake2.tags["T.INT"] = {"id": 5, "integer": 7}
    fake2.send(peer, fake2.updates(["T.INT"]), delay=0.2)
    live.wait_line(lambda l: l.startswith("T.INT 7 good"), 3, since=n, what="T.INT = 7")
    assert live.proc.poll() is None
    assert live.stop() == 0


# ---------------------------------------------------------------------- CLI


def test_cli_usage(env):
    ep = endpoint(env)
    site = client_site(env, ep)
    r = subprocess.run([env.bin("scadactl"), "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0
    for word in ("get", "watch", "write", "--direct", "--broker", "--endpoint", "--count",
                 "--duration", "--timeout", "--json", "bad-not-found"):
        assert word in r.stdout, word
    cases = [
        (["frobnicate"], "frobnicate"),
        (["watch"], "tag"),
        (["get"], "tag"),
        (["watch", "--count", "many", "T.INT"], "many"),
        (["watch", "--duration", "-5", "T.INT"], "-5"),
        (["--direct", "watch", "T.INT"], "--direct"),
        (["--count", "3", "get", "T.INT"], "--count"),
        (["--direct", "--broker", "b1", "get", "T.INT"], "--direct"),
    ]
    for args, word in cases:
        r = ctl(env, site, *args)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
        assert word in r.stderr, (args, r.stderr)


# ----------------------------------------------------- with the real broker


def test_real_broker_get_write_watch(env):
    """The same commands against the real scada-broker, resolver, I/O server
    and a simulated device: the client and the broker agree on the wire."""
    for b in ("scada-broker", "scada-resolver", "scada-ioserver", "scada-devsim"):
        env.bin(b)  # skips when one is not built
    env.start_redis()
    port = env.free_ports(1)
    io = env.ioserver_cfg(always_scan=False, unit_probe_ms=500)
    dev = {"name": "d1", "address": "127.0.0.1:%d" % port, "servers": ["io1"], "scan_ms": 200,
           "tags": [{"name": "R.CONST", "address": "hr:0", "type": "uint16",
                     "sim": {"kind": "const", "initial": 1234}},
                    {"name": "R.SP", "address": "hr:1", "type": "int16"},
                    {"name": "R.F", "address": "hr:2", "type": "float32",
                     "sim": {"kind": "const", "initial": 2.5}}]}
    top = env.pubsub_top(client_heartbeat_ms=500)
    site = env.site([io], [{"name": "net", "type": "network", "devices": [dev]}],
                    resolve_retry_backoff_ms=200, **top)
    env.start_devsim(site)
    env.start_resolver(site, top["resolver"]["endpoint"])
    env.start_ioserver(site, io)
    broker = env.start_broker(site, "b1", top["brokers"][0]["endpoint"])

    def get(*tags):
        r = ctl(env, site, "--timeout", "5000", "get", *tags)
        return r, lines_of(r)

    r, out = wait_until(lambda: (lambda r_out: r_out if r_out[0].returncode == 0 and
                                 r_out[1]["R.CONST"][2] == "good" else None)(
        get("R.CONST", "R.F", "NO.SUCH")), 20, interval=0.5, what="R.CONST good via the broker")
    assert out["R.CONST"][1] == "1234"
    assert out["R.F"][1:3] == ["2.5", "good"]
    assert out["NO.SUCH"][1:3] == ["-", "bad-not-found"]
    assert abs(parse_iso(out["R.CONST"][3]) - now_ms()) < 60000

    r = ctl(env, site, "write", "R.SP", "-12")
    assert r.returncode == 0 and r.stdout == "R.SP ok\n", (r.stdout, r.stderr)
    r = wait_until(lambda: (lambda r2: r2 if lines_of(r2)["R.SP"][1] == "-12" else None)(
        ctl(env, site, "get", "R.SP")), 10, interval=0.3, what="R.SP = -12")
    r = ctl(env, site, "write", "R.SP", "40000")
    assert r.returncode == 1 and "R.SP error: " in r.stdout and "out of range" in r.stdout, r
    r = ctl(env, site, "write", "NO.SUCH", "1")
    assert r.returncode == 1 and "NO.SUCH error: " in r.stdout, r

    r = ctl(env, site, "--json", "watch", "--count", "2", "--duration", "10000", "R.CONST", "R.SP")
    assert r.returncode == 0, (r.stdout, r.stderr)
    objs = {o["tag"]: o for o in map(json.loads, r.stdout.splitlines())}
    assert objs["R.CONST"]["value"] == 1234 and objs["R.SP"]["value"] == -12
    # the broker found nothing to complain about in what the client sent
    log = broker.log_text()
    assert "malformed" not in log, log
