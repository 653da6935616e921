"""Garbage on every TCP port the stack opens: the service keeps serving its
legitimate clients, its memory stays bounded, and what reaches it as a
malformed message is counted.

One stack for the whole module: scada-devsim, the resolver, I/O server io1,
broker b1 and the alarm service. While a checker thread keeps asking every
service what a legitimate client asks (a broker EXISTS and a page of ramps
updating through it, a RESOLVE at the resolver, STATUS at io1, LIST at the
alarm service, ping at devsim's control socket, a Modbus read of a devsim
device), each port in turn gets:

- random bytes: 40 raw TCP connections of 8 KB each;
- 100 half ZMTP handshakes (the 10-byte greeting start, then nothing), kept
  open during the rest of the port's turn;
- a ZMTP peer announcing a 64 MB frame (a pyzmq DEALER; to a PUB port a
  SUB written by hand whose subscription is 64 MB, since pyzmq's own XSUB
  would keep that topic in its trie and crash tearing it down): the
  service must drop the peer (a disconnect seen by a socket monitor, or
  the connection closed) without allocating it (its peak RSS, VmHWM, reset
  before the turn, stays within a bound); on the Modbus port the same is
  an MBAP header announcing 65,535 bytes;
- 200 protobuf-looking frames from a pyzmq DEALER that no decoder can take
  (an invalid wire type, a field longer than the frame, an endless varint,
  no required field), each checked against Python's protobuf first.

Asserted per port: every process alive; every legitimate request answered
within LEGIT_S during and after the turn; the page's values kept coming
(no gap over LEGIT_S); peak RSS of the port's owner at most PEAK_MB and its
RSS after the turn at most KEEP_MB above what it was before; the malformed
frames counted where the service counts malformed input (io1 STATUS
`bad_requests`, `malformed` in the Redis hashes of the resolver, broker and
alarm service, devsim's `stats` for its Modbus ports; devsim's control
socket answers each with `error:`).
"""
import os
import random
import re
import socket
import struct
import threading
import time

import pytest

import scada_helpers as H
from pyclient import PyClient
from scada_helpers import wait_until

PING_MS = 500
LEGIT_S = 1.0            # a legitimate request answered within this, always
# Under ASan freed memory waits in a 16 MB quarantine (tests/system/run.sh)
ASAN_MB = 16 if "asan" in os.environ.get("BUILD", "") else 0
PEAK_MB = 24 + ASAN_MB   # peak RSS growth during a port's turn (the 64 MB frame must not fit)
KEEP_MB = 8 + ASAN_MB    # RSS growth left after a port's turn
RAW_CONNS, RAW_BYTES = 40, 8192
HALF_CONNS = 100
HUGE = 64 * 1024 * 1024
GARBAGE_FRAMES = 200
GREETING_START = b"\xff" + b"\x00" * 7 + b"\x01\x7f"  # ZMTP signature, nothing after it

PORTS = ("ioserver-publish", "ioserver-control", "resolver", "broker", "alarm-publish",
         "alarm-control", "devsim-control", "devsim-modbus")


# ------------------------------------------------------------------ /proc


def _status_kb(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s in /proc/%d/status" % (field, pid))


def rss_kb(pid):
    return _status_kb(pid, "VmRSS")


def peak_kb(pid):
    return _status_kb(pid, "VmHWM")


def reset_peak(pid):
    with open("/proc/%d/clear_refs" % pid, "w") as f:
        f.write("5")  # resets VmHWM to the current RSS


# ----------------------------------------------------------------- garbage


def garbage_frames(rng, n):
    """n frames in protobuf's wire format that cannot decode as any message
    of proto/scada.proto (each message there has a required field 1 or 2)."""
    out = []
    for i in range(n):
        body = bytes(rng.getrandbits(8) for _ in range(rng.randrange(4, 60)))
        k = i % 4
        if k == 0:  # id, then a key with wire type 7 (there is none)
            f = b"\x08" + bytes([rng.randrange(1, 127)]) + bytes([(rng.randrange(3, 15) << 3) | 7])
            f += body
        elif k == 1:  # a length-delimited field longer than the frame
            f = b"\x08\x01\x22\xe8\x07" + body[:20]
        elif k == 2:  # a varint that never ends
            f = b"\x08" + b"\xff" * 11
        else:  # only optional fields: no required field
            f = b"\x9a\x01" + bytes([len(body)]) + body  # field 19, unknown, length-delimited
        out.append(f)
    return out


def _parses(cls, frame):
    m = cls()
    try:
        m.ParseFromString(frame)
    except Exception:
        return False
    return m.IsInitialized()


def raw_random(host, port, rng):
    """RAW_CONNS connections, RAW_BYTES random bytes each, then closed."""
    for _ in range(RAW_CONNS):
        try:
            s = socket.create_connection((host, port), timeout=2)
            data = bytearray(rng.getrandbits(8) for _ in range(RAW_BYTES))
            data[0] = rng.randrange(0, 255)  # 0xFF would start a ZMTP greeting
            data[2] = 0x5A  # a Modbus TCP protocol id other than 0
            s.sendall(bytes(data))
            s.close()
        except OSError:
            pass  # the service may close first: that is its right


def half_handshakes(host, port):
    socks = []
    for _ in range(HALF_CONNS):
        s = socket.create_connection((host, port), timeout=2)
        try:
            s.sendall(GREETING_START)
        except OSError:
            pass
        socks.append(s)
    return socks


def huge_zmq(ctx, endpoint, kind):
    """A pyzmq peer that sends a 64 MB message. True when the service
    dropped the connection (monitor: DISCONNECTED) within 5 s."""
    import zmq
    from zmq.utils.monitor import recv_monitor_message
    if kind == "pub":
        host, port = endpoint.rsplit("/", 1)[-1].rsplit(":", 1)
        return huge_subscription(host, int(port))
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    mon = sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
    try:
        sock.connect(endpoint)
        payload = bytes(HUGE)
        if kind == "rep":
            sock.send_multipart([b"", payload])
        else:
            sock.send(payload)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if mon.poll(100):
                ev = recv_monitor_message(mon)
                if ev["event"] == zmq.EVENT_DISCONNECTED:
                    return True
        return False
    finally:
        sock.disable_monitor()
        mon.close(0)
        sock.close(0)


def _closed_after(s, data):
    """Send data; True when the peer closes the connection meanwhile or
    within 3 s after."""
    try:
        s.sendall(data)
    except OSError:
        return True
    s.settimeout(3)
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def huge_subscription(host, port):
    """A ZMTP 3.0 SUB written by hand (pyzmq's own XSUB would keep a 64 MB
    topic in its subscription trie): greeting, READY, then a subscription
    frame of 64 MB. True when the PUB dropped the connection."""
    s = socket.create_connection((host, port), timeout=3)
    try:
        s.sendall(GREETING_START + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" * 32)
        got = b""
        while len(got) < 64:
            chunk = s.recv(64 - len(got))
            if not chunk:
                return True
            got += chunk
        ready = b"\x05READY" + b"\x0bSocket-Type" + struct.pack(">I", 3) + b"SUB"
        s.sendall(bytes([0x04, len(ready)]) + ready)
        head = bytes([0x02]) + struct.pack(">Q", HUGE)  # a long frame
        return _closed_after(s, head + b"\x01" + bytes(HUGE - 1))
    finally:
        s.close()


def huge_modbus(host, port):
    """An MBAP header announcing 65,535 bytes, then 64 KB: True when the
    device closed the connection."""
    s = socket.create_connection((host, port), timeout=2)
    try:
        return _closed_after(s, struct.pack(">HHHB", 1, 0, 0xFFFF, 1) + bytes(65536))
    finally:
        s.close()


def zmq_garbage(ctx, endpoint, kind, frames, window=50):
    """The frames from a DEALER, at most `window` unanswered at a time (the
    services queue at least 100 replies per peer); returns the replies.
    A frame unanswered for 3 s ends it."""
    import zmq
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    replies = []
    try:
        if kind == "pub":  # a PUB refuses a DEALER at the handshake
            for f in frames:
                sock.send(f)
            return replies
        sent = 0
        while len(replies) < len(frames):
            while sent < len(frames) and sent - len(replies) < window:
                sock.send_multipart([b"", frames[sent]] if kind == "rep" else [frames[sent]])
                sent += 1
            if not sock.poll(3000):
                break
            replies.append(sock.recv_multipart())
        return replies
    finally:
        sock.close(0)


# --------------------------------------------------------- legitimate use


def modbus_read(sock, tid):
    sock.sendall(struct.pack(">HHHBBHH", tid, 0, 6, 1, 3, 0, 1))
    got = b""
    while len(got) < 11:
        chunk = sock.recv(11 - len(got))
        if not chunk:
            raise OSError("closed")
        got += chunk
    assert got[7] == 3 and got[8] == 2, got


class Checker:
    """A thread asking every service what a legitimate client asks, every
    0.2 s. samples: (check, monotonic time, seconds taken or None for no
    answer within 3 s)."""

    def __init__(self, st):
        import zmq
        self.st = st
        self.ctx = zmq.Context()
        self.samples = []
        self.errors = []
        self.lock = threading.Lock()
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _timed(self, name, fn):
        t = time.monotonic()
        try:
            fn()
            took = time.monotonic() - t
        except Exception as exc:
            took = None
            with self.lock:
                self.errors.append((name, t, repr(exc)))
        with self.lock:
            self.samples.append((name, t, took))

    def _req(self, endpoint, frames, timeout=3.0):
        import zmq
        s = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        try:
            s.connect(endpoint)
            s.send_multipart(frames)
            if not s.poll(int(timeout * 1000)):
                raise TimeoutError(endpoint)
            return s.recv_multipart()
        finally:
            s.close()

    def _run(self):
        st = self.st
        pbm = H.pb
        mb = None
        tid = 0
        rid = 0
        while not self._stop:
            rid += 1

            def resolve():
                m = pbm.ResolverMsg()
                m.ParseFromString(self._req(st.resolver_ep, [pbm.ResolverMsg(
                    kind=pbm.ResolverMsg.RESOLVE, id=rid, names=["R1"]).SerializeToString()])[-1])
                assert m.kind == pbm.ResolverMsg.RESOLVED and m.tags[0].found, m

            def alarm_list():
                r = pbm.AlarmReply()
                r.ParseFromString(self._req(st.alarm["control"], [pbm.AlarmRequest(
                    id=rid, kind=pbm.AlarmRequest.LIST).SerializeToString()])[-1])
                assert r.status == pbm.AlarmReply.OK and r.alarms, r

            def devsim_ping():
                r = self._req(st.devsim.control, [b"", b"ping"])
                assert r[-1] == b"ok pong", r

            def exists():
                r = st.client.request(timeout=3, kind=pbm.ClientRequest.EXISTS, names=["R2"])
                assert list(r.found) == [True], r

            def modbus():
                nonlocal mb, tid
                if mb is None:
                    mb = socket.create_connection(("127.0.0.1", st.ports), timeout=3)
                tid = (tid + 1) & 0xFFFF
                try:
                    modbus_read(mb, tid)
                except Exception:
                    mb.close()
                    mb = None
                    raise

            self._timed("io1 STATUS", lambda: st.io.status(timeout=3))
            self._timed("resolver RESOLVE", resolve)
            self._timed("alarm LIST", alarm_list)
            self._timed("devsim ping", devsim_ping)
            self._timed("broker EXISTS", exists)
            self._timed("devsim Modbus read", modbus)
            time.sleep(0.2)
        if mb is not None:
            mb.close()

    def between(self, t0, t1):
        with self.lock:
            return [s for s in self.samples if t0 <= s[1] <= t1]

    def stop(self):
        self._stop = True
        self.thread.join(10)
        self.ctx.term()


def level_tag(name, addr, initial):
    return {"name": name, "address": addr, "type": "uint16",
            "sim": {"kind": "const", "initial": initial}, "alarms": {"hi": 50, "deadband": 5}}


def ramp(name, addr):
    return {"name": name, "address": addr, "type": "uint16",
            "sim": {"kind": "ramp", "min": 0, "max": 60000, "period_ms": 3000}}


class Stack:
    def __init__(self, env):
        self.env = env
        self.ports = env.free_ports(2)
        self.io_cfg = env.ioserver_cfg("io1", always_scan=False, unit_probe_ms=500)
        devices = [
            {"name": "d1", "address": "127.0.0.1:%d" % self.ports, "servers": ["io1"],
             "scan_ms": 100, "tags": [ramp("R1", "hr:0"), ramp("R2", "hr:1"),
                                      level_tag("L1", "hr:2", 80)]},
            {"name": "d2", "address": "127.0.0.1:%d" % (self.ports + 1), "servers": ["io1"],
             "scan_ms": 100, "tags": [ramp("R3", "hr:0")]},
        ]
        top = env.pubsub_top()
        self.resolver_ep = top["resolver"]["endpoint"]
        self.broker_ep = top["brokers"][0]["endpoint"]
        self.alarm = env.alarm_top()
        self.site = env.site([self.io_cfg], [{"name": "net", "type": "network",
                                              "devices": devices}],
                             ping_time_ms=PING_MS, alarm=self.alarm, **top)
        self.devsim = env.start_devsim(self.site)
        self.resolver = env.start_resolver(self.site, self.resolver_ep)
        self.io = env.start_ioserver(self.site, self.io_cfg)
        self.broker = env.start_broker(self.site, "b1", self.broker_ep)
        self.svc = env.start_alarm(self.site, self.alarm["control"])
        self.client = env.own(PyClient(H.pb, self.broker_ep, "garbage-watch"))
        self.client.subscribe(1, ["R1", "R2", "R3"])
        self.client.wait(lambda: all(self._good(n) for n in ("R1", "R2", "R3")), 10,
                         "first values of the page")
        self.procs = [self.devsim, self.resolver, self.io, self.broker, self.svc]

    def _good(self, name):
        u = self.client.value(name)
        return u is not None and u.quality == H.pb.Quality.Value("GOOD")

    def redis_count(self, key, field="malformed"):
        v = self.env.redis.client.hget("scada:%s:%s" % (self.env.site_name, key), field)
        return int(v or 0)

    def port(self, which):
        """(host, port, zmq kind or 'modbus', owner Proc, counter or None)."""
        def ep(e):
            host, port = e.rsplit("/", 1)[-1].rsplit(":", 1)
            return host, int(port)

        def devsim_malformed():
            return int(re.search(r'"malformed":(\d+)', self.devsim.cmd("stats")).group(1))
        table = {
            "ioserver-publish": (self.io_cfg["publish"], "pub", self.io, None),
            "ioserver-control": (self.io_cfg["control"], "router", self.io,
                                 lambda: self.io.status()["bad_requests"]),
            "resolver": (self.resolver_ep, "router", self.resolver,
                         lambda: self.redis_count("resolver")),
            "broker": (self.broker_ep, "router", self.broker,
                       lambda: self.redis_count("broker:b1")),
            "alarm-publish": (self.alarm["publish"], "pub", self.svc, None),
            "alarm-control": (self.alarm["control"], "router", self.svc,
                              lambda: self.redis_count("alarm")),
            "devsim-control": (self.devsim.control, "rep", self.devsim, None),
            "devsim-modbus": ("tcp://127.0.0.1:%d" % self.ports, "modbus", self.devsim,
                              devsim_malformed),
        }
        endpoint, kind, owner, counter = table[which]
        host, port = ep(endpoint)
        return endpoint, host, port, kind, owner, counter


@pytest.fixture(scope="module")
def stack(pb, tmp_path_factory, bin_dir, free_ports):
    env = H.Env(tmp_path_factory.mktemp("garbage"), bin_dir, free_ports)
    checker = None
    try:
        env.start_redis()
        st = Stack(env)
        checker = Checker(st)
        st.checker = checker
        time.sleep(1.0)  # a baseline of legitimate answers
        yield st
    finally:
        if checker:
            checker.stop()
        procs = [o for o in env._owned if isinstance(o, H.Proc)]
        errors = env.cleanup()
        for p in procs:
            print("----- %s (%s)\n%s" % (p.name, p.log_path, p.log_tail(15)))
        assert not errors, errors


def malformed_lines(proc):
    """Lines of the process's log that tell of malformed input."""
    with open(proc.log_path, errors="replace") as f:
        return sum(1 for line in f if "malformed" in line)


@pytest.mark.parametrize("which", PORTS)
def test_garbage_port_keeps_serving(stack, which):
    import zmq
    st = stack
    endpoint, host, port, kind, owner, counter = st.port(which)
    rng = random.Random(sum(which.encode()))
    frames = garbage_frames(rng, GARBAGE_FRAMES)
    for cls in (H.pb.IoRequest, H.pb.ResolverMsg, H.pb.ClientRequest, H.pb.AlarmRequest):
        assert not any(_parses(cls, f) for f in frames), "a garbage frame decodes as %s" % cls
    ctx = zmq.Context()
    before_rss = rss_kb(owner.pid)
    count0 = counter() if counter else None
    logged0 = malformed_lines(owner)
    t_mark = time.monotonic()
    updates0 = len(st.client.history("R1", 0.0))
    reset_peak(owner.pid)
    t0 = time.monotonic()
    half = []
    try:
        raw_random(host, port, rng)
        half = half_handshakes(host, port)
        if kind == "modbus":
            dropped = huge_modbus(host, port)
        else:
            dropped = huge_zmq(ctx, endpoint, kind)
        replies = []
        if kind == "modbus":
            # "protobuf-looking" frames on a Modbus port are just more garbage
            for f in frames[:20]:
                raw = socket.create_connection((host, port), timeout=2)
                try:
                    raw.sendall(b"\x00\x01\x5a\x5a" + f)
                except OSError:
                    pass
                raw.close()
        else:
            replies = zmq_garbage(ctx, endpoint, kind, frames)
        time.sleep(1.0)  # legitimate clients still served with the garbage connections open
        peak = peak_kb(owner.pid)
    finally:
        for s in half:
            s.close()
        ctx.term()
    time.sleep(1.0)  # and after
    t1 = time.monotonic()
    after_rss = rss_kb(owner.pid)

    # Every process alive.
    dead = [p.name for p in st.procs if not p.alive()]
    assert not dead, "%s died during garbage on %s" % (dead, which)
    # Every legitimate request answered, in normal time, during and after.
    samples = st.checker.between(t0, t1)
    names = {s[0] for s in samples}
    assert len(names) == 6 and len(samples) >= 30, samples
    slow = [(n, round(took, 3) if took is not None else None) for n, _, took in samples
            if took is None or took > LEGIT_S]
    assert not slow, "garbage on %s: legitimate requests slow or unanswered: %s %s" % (
        which, slow, [e for e in st.checker.errors if t0 <= e[1] <= t1])
    # The page's values kept coming through the broker.
    ups = [u.t for u in st.client.history("R1", t_mark)]
    assert len(st.client.history("R1", 0.0)) > updates0
    gaps = [b - a for a, b in zip([t0] + ups, ups + [t1])]
    assert max(gaps) <= LEGIT_S, "garbage on %s: no value of R1 for %.2f s" % (which, max(gaps))
    # The oversized frame: the peer dropped, nothing of it allocated.
    grew_peak = (peak - before_rss) / 1024.0
    grew = (after_rss - before_rss) / 1024.0
    print("%s: RSS %.1f MB before, peak +%.1f MB, after +%.1f MB; max legit %.3f s" % (
        which, before_rss / 1024.0, grew_peak, grew,
        max(took for _, _, took in samples)))
    assert dropped, "%s kept a peer that announced a 64 MB frame" % which
    assert grew_peak <= PEAK_MB, "%s: peak RSS grew %.1f MB" % (which, grew_peak)
    assert grew <= KEEP_MB, "%s: RSS grew %.1f MB and stayed" % (which, grew)
    # The malformed frames were counted (Redis hashes are refreshed every ping).
    if counter:
        want = GARBAGE_FRAMES if kind != "modbus" else 20
        wait_until(lambda: counter() - count0 >= want, 3 * PING_MS / 1000.0 + 1,
                   what="%d malformed frames counted by %s (from %d)" % (want, which, count0))
    if kind == "rep":
        assert len(replies) == GARBAGE_FRAMES, len(replies)
        assert all(r[-1].startswith(b"error") for r in replies), replies[:3]
    elif kind == "router":
        # each answered with an error in the service's own reply message
        cls, bad = {
            "ioserver-control": (H.pb.IoReply, lambda r: r.status == H.pb.IoReply.ERROR),
            "resolver": (H.pb.ResolverMsg, lambda r: r.kind == H.pb.ResolverMsg.ERROR),
            "broker": (H.pb.BrokerMsg, lambda r: r.kind == H.pb.BrokerMsg.ERROR),
            "alarm-control": (H.pb.AlarmReply, lambda r: r.status == H.pb.AlarmReply.ERROR),
        }[which]
        decoded = []
        for r in replies:
            m = cls()
            m.ParseFromString(r[-1])
            decoded.append(m)
        print("%s: %d of %d garbage frames answered" % (which, len(replies), GARBAGE_FRAMES))
        assert len(replies) == GARBAGE_FRAMES and all(map(bad, decoded)), decoded[:3]
        # logged, but at most a line a second, so a hostile peer cannot fill the disk
        logged = malformed_lines(owner) - logged0
        print("%s: %d log lines about malformed input in %.1f s" % (which, logged, t1 - t0))
        assert 1 <= logged <= (t1 - t0) + 2, (which, logged, t1 - t0)
