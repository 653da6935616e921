#!/usr/bin/python3
"""Publish-subscribe over a slow link: page change, idle cost, failover.

A client sits in its own network namespace behind a veth pair limited to
56 kbit/s in each direction (`tc qdisc ... tbf rate 56kbit burst 1600
latency 2s` on both ends). scada-devsim, scada-resolver, two scada-ioserver
(io1 priority 1, io2 priority 2, on the same devices), scada-broker and a
private redis-server run on the host side; the broker listens on the host
end of the veth. The client (bench/pubsub_client.py, run with `ip netns
exec`) speaks the broker protocol with pyzmq and Python protobuf and behaves
on the wire like the C client library. Bytes on the link are the host end's
rx_bytes + tx_bytes (whole Ethernet frames: TCP/IP and ZMTP included); a
packet socket on the same end splits them by kind.

1. Page change: a fresh stack (nothing resolved, nothing polled), the client
   connected (set-up reported apart), then one SUBSCRIBE of 200 tags spread
   over 10 online devices, until every tag has a good first value. Next to:
   (a) a baseline client doing EXISTS, RESOLVE and SUBSCRIBE per tag, each
   waiting for its answer, on a fresh stack as well; (b) the lower bound:
   the protobuf bytes of our SUBSCRIBE and of the SUBSCRIBED + UPDATES
   received until all first values, divided by 56 kbit/s.
   Targets: under 1.5 s and within 1.3x the lower bound.
2. Idle: the same page subscribed, values constant, ping_time_ms 1000:
   bytes per second on the link, next to the field figure 4 connections x
   82 bytes/s = 328 bytes/s. Target: at most 130 bytes/s. Then kill -9 of
   io1: the time until the client sees the quality go bad (target: within
   2 x ping_time).
3. Failover: a page of 20 ramping tags (scan 200 ms); kill -9 of io1 until
   the first good value from io2 after the bad one; io1 restarted and
   failed back before the next run. Median and worst, next to 2 x ping_time
   and the scan period.

Needs root (network namespace, veth, tc). Exits 0 whether targets are met or
not, 1 if it could not run.

    /usr/bin/python3 bench/pubsub.py [--quick] [--parts page,idle,failover]
        [--reps 3] [--idle-s 60] [--failover-runs 10] [--no-c-client] [--keep]
"""
import argparse
import atexit
import json
import os
import queue
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

PY = "/usr/bin/python3"
CLIENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pubsub_client.py")

RATE_BIT = 56000                 # tc "56kbit" is 56,000 bit/s
TBF = ["rate", "56kbit", "burst", "1600", "latency", "2s"]
PING_MS = 1000
HEARTBEAT_MS = 5000              # the broker's client_heartbeat_ms default
FIELD_BYTES_S = 4 * 82           # the field figure: 4 connections x 82 bytes/s
TARGET_PAGE_S = 1.5
TARGET_PAGE_RATIO = 1.3
TARGET_IDLE = 130.0

NDEV = 10                        # PLC001..PLC010
TAGS_PER_DEV = 40
PAGE_PER_DEV = 20                # 10 x 20 = 200 tags on the page
KINDS = ("LEVEL", "TEMP", "FLOW", "PRESS", "VALVE")
NRAMP = 4                        # RMP01..RMP04, 5 ramping tags each
RAMP_TAGS = 5
RAMP_SCAN_MS = 200


# ---------------------------------------------------------------- the link

def sh(argv, check=True):
    r = subprocess.run(argv, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(argv), (r.stderr or r.stdout).strip()))
    return r


class SlowLink:
    """A network namespace joined to the host by a veth pair, each end with
    a tbf qdisc at 56 kbit/s. Names carry the benchmark's pid; the subnet
    10.77.X.0/24 is one no interface uses yet. Removed at exit, also on an
    error or a signal; leftovers of a benchmark that was killed (its pid
    gone) are removed at start."""

    PREFIX = "scbench"

    def __init__(self):
        pid = os.getpid()
        self.ns = "%s%d" % (self.PREFIX, pid)
        self.host = "scb%dh" % pid
        self.peer = "scb%dc" % pid
        self.active = False
        self.cleanup_stale()
        used = sh(["ip", "-4", "-o", "addr"]).stdout
        subnets = list(range(1, 255))
        random.Random(pid).shuffle(subnets)
        for x in subnets:
            if " 10.77.%d." % x not in used:
                break
        self.net = "10.77.%d" % x
        self.host_ip = self.net + ".1"
        self.peer_ip = self.net + ".2"

    @classmethod
    def cleanup_stale(cls):
        r = sh(["ip", "netns", "list"], check=False)
        for line in r.stdout.splitlines():
            name = line.split()[0] if line.split() else ""
            if not name.startswith(cls.PREFIX) or not name[len(cls.PREFIX):].isdigit():
                continue
            pid = int(name[len(cls.PREFIX):])
            if pid == os.getpid() or os.path.exists("/proc/%d" % pid):
                continue
            B.log("removing the namespace %s of a benchmark that is gone", name)
            sh(["ip", "link", "del", "scb%dh" % pid], check=False)
            sh(["ip", "netns", "del", name], check=False)

    def up(self):
        atexit.register(self.down)
        self.active = True
        ns = ["ip", "netns", "exec", self.ns]
        sh(["ip", "netns", "add", self.ns])
        sh(["ip", "link", "add", self.host, "type", "veth", "peer", "name", self.peer])
        sh(["ip", "link", "set", self.peer, "netns", self.ns])
        # No IPv6 on the link (router solicitations, MLD): only what the
        # client and broker send, plus ARP, crosses it.
        for argv in (["sysctl", "-qw", "net.ipv6.conf.%s.disable_ipv6=1" % self.host],
                     ns + ["sysctl", "-qw", "net.ipv6.conf.%s.disable_ipv6=1" % self.peer]):
            sh(argv, check=False)
        # One TCP segment per packet (no GSO super-packets), so the counters
        # count every segment's headers and tbf shapes packets as sent.
        sh(["ip", "link", "set", "dev", self.host, "gso_max_segs", "1"], check=False)
        sh(ns + ["ip", "link", "set", "dev", self.peer, "gso_max_segs", "1"], check=False)
        sh(["ip", "addr", "add", self.host_ip + "/24", "dev", self.host])
        sh(ns + ["ip", "addr", "add", self.peer_ip + "/24", "dev", self.peer])
        sh(["tc", "qdisc", "add", "dev", self.host, "root", "tbf"] + TBF)
        sh(ns + ["tc", "qdisc", "add", "dev", self.peer, "root", "tbf"] + TBF)
        out = sh(["tc", "qdisc", "show", "dev", self.host]).stdout
        # The bucket as the kernel holds it ("burst 1599b" for 1600).
        self.burst = int(out.split("burst", 1)[1].split()[0].rstrip("b"))
        sh(["ip", "link", "set", self.host, "up"])
        sh(ns + ["ip", "link", "set", self.peer, "up"])
        sh(ns + ["ip", "link", "set", "lo", "up"])
        B.log("link up: %s %s (host) <-> %s %s (netns %s), tbf %s each way", self.host,
              self.host_ip, self.peer, self.peer_ip, self.ns, " ".join(TBF))

    def down(self):
        if not self.active:
            return
        self.active = False
        sh(["ip", "link", "del", self.host], check=False)
        sh(["ip", "netns", "del", self.ns], check=False)
        B.log("link %s and namespace %s removed", self.host, self.ns)

    def netns_argv(self, argv):
        return ["ip", "netns", "exec", self.ns] + list(argv)

    def counters(self):
        d = "/sys/class/net/%s/statistics/" % self.host
        vals = {}
        for k in ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets", "tx_dropped", "rx_dropped"):
            with open(d + k) as f:
                vals[k] = int(f.read())
        vals["t"] = time.monotonic()
        return vals

    def qdisc_drops(self):
        """Packets tbf dropped on both ends (queue over its 2 s limit)."""
        n = 0
        for argv in (["tc", "-s", "qdisc", "show", "dev", self.host],
                     self.netns_argv(["tc", "-s", "qdisc", "show", "dev", self.peer])):
            out = sh(argv, check=False).stdout
            if "dropped" in out:
                n += int(out.split("dropped", 1)[1].split(",")[0].strip())
        return n


def delta(c0, c1):
    d = {k: c1[k] - c0[k] for k in c0}
    d["bytes"] = d["rx_bytes"] + d["tx_bytes"]
    d["packets"] = d["rx_packets"] + d["tx_packets"]
    return d


class Sniffer(threading.Thread):
    """A packet socket on the host end of the veth: every frame in both
    directions, its time, size and kind (ARP, TCP handshake/close, bare
    ACK, ZMTP PING/PONG, HEARTBEAT messages, other data)."""

    def __init__(self, ifname, broker_port):
        super().__init__(daemon=True)
        self.port = broker_port
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        self.sock.bind((ifname, 0))
        self.sock.settimeout(0.2)
        self.frames = []
        self.lock = threading.Lock()
        self.stop = False

    def run(self):
        while not self.stop:
            try:
                data, addr = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            t = time.monotonic()
            kind = self.classify(data)
            with self.lock:
                self.frames.append((t, len(data), addr[2] == socket.PACKET_OUTGOING, kind))
        self.sock.close()

    def classify(self, f):
        if len(f) < 14:
            return "other"
        etype = struct.unpack(">H", f[12:14])[0]
        if etype == 0x0806:
            return "ARP"
        if etype != 0x0800 or len(f) < 34:
            return "other"
        ihl = (f[14] & 0x0F) * 4
        total = struct.unpack(">H", f[16:18])[0]
        if f[23] != 6:
            return "other IPv4"
        tcp = 14 + ihl
        sport, dport = struct.unpack(">HH", f[tcp:tcp + 4])
        doff = (f[tcp + 12] >> 4) * 4
        flags = f[tcp + 13]
        payload = f[tcp + doff:14 + total]
        if flags & 0x07:  # FIN, SYN, RST
            return "TCP open/close"
        if not payload:
            return "bare ACK"
        from_broker = sport == self.port
        if payload[0] & 0x04:  # a ZMTP command
            body = payload[2:] if not payload[0] & 0x02 else payload[9:]
            if body[1:5] in (b"PING", b"PONG"):
                return "ZMTP PING/PONG"
            return "other data"
        body = payload[2:] if not payload[0] & 0x02 else payload[9:]
        if len(body) >= 2 and body[0] == 0x08:
            if from_broker and body[1] == 4:
                return "broker HEARTBEAT"
            if not from_broker and body[1] == 3:
                return "client HEARTBEAT"
        return "updates/replies" if from_broker else "requests"

    def directions(self, t0, t1):
        """Bytes of frames carrying TCP data, per direction, and the first
        frame of updates or replies from the broker, in [t0, t1)."""
        out = {"to_client": 0, "to_broker": 0, "first_from_broker": None}
        with self.lock:
            for t, n, outgoing, kind in self.frames:
                if t0 <= t < t1 and kind not in ("bare ACK", "TCP open/close", "ARP", "other",
                                                 "other IPv4"):
                    out["to_client" if outgoing else "to_broker"] += n
                    if kind == "updates/replies" and out["first_from_broker"] is None:
                        out["first_from_broker"] = t
        return out

    def summary(self, t0, t1):
        out = {}
        with self.lock:
            for t, n, _, kind in self.frames:
                if t0 <= t < t1:
                    c = out.setdefault(kind, [0, 0])
                    c[0] += 1
                    c[1] += n
        return out


# ---------------------------------------------------------------- the site

def tag_name(d, k):
    return "PLC%03d.%s_%03d" % (d, KINDS[k % len(KINDS)], k)


def page_names():
    return [tag_name(d, k) for d in range(1, NDEV + 1) for k in range(PAGE_PER_DEV)]


def ramp_names():
    return ["RMP%02d.FLOW_%03d" % (d, k) for d in range(1, NRAMP + 1) for k in range(RAMP_TAGS)]


def write_site(path, site_name, redis_port, devsim_ctl, dev_base, resolver_ep, broker_ep, ios):
    import yaml
    servers = [{"ioserver": "io1", "priority": 1}, {"ioserver": "io2", "priority": 2}]
    devices = []
    for d in range(1, NDEV + 1):
        tags = []
        for k in range(TAGS_PER_DEV):
            # Constant values, half integral (uint16), half not (float32):
            # both encodings of an Update travel.
            if k % 2 == 0:
                tags.append({"name": tag_name(d, k), "address": "hr:%d" % (2 * k),
                             "type": "uint16",
                             "sim": {"kind": "const", "initial": 100 + 37 * k + d}})
            else:
                tags.append({"name": tag_name(d, k), "address": "hr:%d" % (2 * k),
                             "type": "float32",
                             "sim": {"kind": "const", "initial": 20.25 + 0.5 * k + d}})
        devices.append({"name": "plc%03d" % d, "address": "127.0.0.1:%d" % (dev_base + d - 1),
                        "servers": [dict(s) for s in servers], "tags": tags})
    ramps = []
    for d in range(1, NRAMP + 1):
        tags = [{"name": "RMP%02d.FLOW_%03d" % (d, k), "address": "hr:%d" % k, "type": "uint16",
                 "sim": {"kind": "ramp", "min": 0, "max": 1000, "period_ms": 10000}}
                for k in range(RAMP_TAGS)]
        ramps.append({"name": "rmp%02d" % d,
                      "address": "127.0.0.1:%d" % (dev_base + NDEV + d - 1),
                      "servers": [dict(s) for s in servers], "scan_ms": RAMP_SCAN_MS,
                      "tags": tags})
    doc = {
        "site": site_name,
        "redis": {"host": "127.0.0.1", "port": redis_port},
        "security": {"plain": True},  # the plain data path is what is measured
        "ping_time_ms": PING_MS,
        "devsim": {"control": devsim_ctl},
        "resolver": {"endpoint": resolver_ep},
        # Broker defaults otherwise: not resolve_on_startup, update_interval_ms
        # 100, initial_wait_ms 200, client_heartbeat_ms 5000.
        "brokers": [{"name": "b1", "endpoint": broker_ep}],
        "ioservers": ios,
        "channels": [{"name": "plant", "type": "network", "devices": devices},
                     {"name": "ramps", "type": "network", "devices": ramps}],
    }
    with open(path, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False, width=200)


# ---------------------------------------------------------------- processes

def port_of(endpoint):
    return int(endpoint.rsplit(":", 1)[1])


def host_of(endpoint):
    return endpoint.split("//", 1)[1].rsplit(":", 1)[0]


def listens(host, port):
    try:
        socket.create_connection((host, port), 0.3).close()
        return True
    except OSError:
        return False


class Stack:
    """resolver, io1, io2 and broker b1, started fresh (nothing resolved,
    nothing subscribed) and stopped."""

    def __init__(self, w):
        self.w = w
        self.n = 0
        self.procs = {}
        self.ioc = {}

    def start(self):
        w = self.w
        self.n += 1
        w.runs += 1
        tag = "%d" % w.runs
        cfg = ["--config", w.site] + w.log_level
        # The previous resolver's best offers must not pass for this one's.
        w.redis.delete("scada:%s:resolver:offers" % w.site_name)
        self.procs["resolver"] = w.procs.start("resolver-" + tag, [w.bins["scada-resolver"]] + cfg)
        B.wait_for("the resolver", lambda: w.procs.check_alive(self.procs["resolver"])
                   or listens("127.0.0.1", port_of(w.resolver_ep)), 15, 0.05)
        for io in ("io1", "io2"):
            self.start_io(io)
        self.procs["broker"] = w.procs.start("broker-" + tag, [w.bins["scada-broker"]] + cfg
                                             + ["--name", "b1"])
        B.wait_for("the broker", lambda: w.procs.check_alive(self.procs["broker"])
                   or listens(host_of(w.broker_ep), port_of(w.broker_ep)), 15, 0.05)
        bkey = "scada:%s:broker:b1" % w.site_name
        B.wait_for("the broker to see the resolver",
                   lambda: w.redis.hget(bkey, "resolver") == "up"
                   and int(w.redis.hget(bkey, "pid") or 0) == self.procs["broker"].pid, 20, 0.1,
                   alive=lambda: w.procs.check_alive(*self.procs.values()))
        self.wait_primary()
        B.wait_for("io2 with every device online",
                   lambda: self.status("io2").get("devices_online") == NDEV + NRAMP, 20, 0.1)

    def start_io(self, io):
        w = self.w
        self.procs[io] = w.procs.start("%s-%d" % (io, w.runs),
                                       [w.bins["scada-ioserver"], "--config", w.site,
                                        "--name", io] + w.log_level)
        if io not in self.ioc:
            self.ioc[io] = B.IoControl(w.ctx, w.ios[io]["control"])
        B.wait_for("%s answering" % io, lambda: self.status(io), 15, 0.1)

    def status(self, io):
        self.w.procs.check_alive(self.procs[io])
        try:
            return self.ioc[io].status(1000)
        except TimeoutError:
            # a lost reply would shift the ids: use a fresh socket
            self.ioc[io].close()
            self.ioc[io] = B.IoControl(self.w.ctx, self.w.ios[io]["control"])
            return {}

    def offers(self):
        return self.w.redis.hgetall("scada:%s:resolver:offers" % self.w.site_name)

    def wait_primary(self, timeout=20):
        B.wait_for("io1 the best offer of every device",
                   lambda: (o := self.offers()) and len(o) == NDEV + NRAMP
                   and all(v == "io1" for v in o.values()), timeout, 0.05)

    def kill_io1(self):
        p = self.procs["io1"]
        t = time.monotonic()
        p.send_signal(signal.SIGKILL)
        p.wait()
        self.w.procs.procs.remove(p)
        return t

    def stop(self):
        for name in ("broker", "io2", "io1", "resolver"):
            p = self.procs.pop(name, None)
            if p is not None:
                self.w.procs.stop(p)
        for c in self.ioc.values():
            c.close()
        self.ioc = {}


class LinkClient:
    """bench/pubsub_client.py inside the namespace; its JSON lines are
    read by a thread."""

    def __init__(self, w, mode, names, name):
        self.w = w
        path = os.path.join(w.work, "names-%s.txt" % name)
        with open(path, "w") as f:
            f.write("\n".join(names) + "\n")
        self.log_path = os.path.join(w.work, "client-%s.log" % name)
        log = open(self.log_path, "ab")
        argv = w.link.netns_argv([PY, CLIENT, "--pb", w.pbdir, "--endpoint", w.client_ep,
                                  "--names", path, "--mode", mode, "--name", name,
                                  "--heartbeat-ms", str(HEARTBEAT_MS)])
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=log, text=True, bufsize=1)
        log.close()
        w.clients.append(self)
        self.q = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.p.stdout:
            try:
                self.q.put(json.loads(line))
            except ValueError:
                self.q.put({"ev": "garbage", "line": line})
        self.q.put({"ev": "eof"})

    def get(self, timeout):
        try:
            ev = self.q.get(timeout=timeout)
        except queue.Empty:
            return None
        if ev["ev"] in ("error", "eof", "garbage"):
            tail = open(self.log_path, errors="replace").read()[-2000:]
            raise RuntimeError("link client: %s%s" % (ev.get("error", ev["ev"]),
                                                      ("\n" + tail) if tail else ""))
        return ev

    def expect(self, kind, timeout):
        deadline = time.monotonic() + timeout
        while True:
            ev = self.get(max(0.01, deadline - time.monotonic()))
            if ev is None:
                raise TimeoutError("link client: no %r within %.0f s" % (kind, timeout))
            if ev["ev"] == kind:
                return ev

    def events(self, timeout):
        """Every event until `timeout` s pass without one."""
        evs = []
        while True:
            ev = self.get(timeout)
            if ev is None:
                return evs
            evs.append(ev)

    def cmd(self, text):
        self.p.stdin.write(text + "\n")
        self.p.stdin.flush()

    def stop(self):
        if self.p.poll() is None:
            try:
                self.cmd("quit")
                self.p.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.p.kill()
                self.p.wait()
        if self in self.w.clients:
            self.w.clients.remove(self)


class World:
    """Everything of one run of the benchmark."""

    def __init__(self, args, work):
        self.args = args
        self.work = work
        self.procs = B.Procs(work)
        self.ctx = zmq.Context()
        self.clients = []
        self.runs = 0

    def stop_clients(self):
        for c in list(self.clients):
            c.stop()


# ---------------------------------------------------------------- parts

def connect_client(w, mode, names, name):
    c0 = w.link.counters()
    c = LinkClient(w, mode, names, name)
    ev = c.expect("connected", 30)
    time.sleep(0.5)  # the last ACKs of the handshake
    return c, ev["setup_s"], delta(c0, w.link.counters())


def page_run(w, stack, mode):
    stack.start()
    names = page_names()
    try:
        c, setup_s, setup = connect_client(w, mode, names, mode)
        time.sleep(0.5)
        c0 = w.link.counters()
        c.cmd("go")
        done = c.expect("done", 600)
        time.sleep(0.5)  # trailing ACKs; nothing else flows (values constant)
        c1 = w.link.counters()
        d = delta(c0, c1)
        dirs = w.sniffer.directions(c0["t"], c1["t"])
        c.stop()
        payload = done["sent_bytes"] + done["rx_bytes"]
        res = dict(mode=mode, elapsed=done["elapsed"], reply_s=done["reply_s"],
                   in_reply=done["in_reply"], sent=done["sent_bytes"], rx=done["rx_bytes"],
                   payload=payload, link=d["bytes"], packets=d["packets"],
                   msgs=done["sent_msgs"] + done["rx_msgs"], setup_s=setup_s,
                   setup_bytes=setup["bytes"], lb=payload * 8.0 / RATE_BIT,
                   rtt=done.get("rtt"), to_client=dirs["to_client"],
                   to_broker=dirs["to_broker"])
        # tbf lets a full bucket through at once after an idle spell; a line
        # paced from the first byte would spend that on the wire too.
        if mode == "page":
            # one request, one reply: one bucket of credit each way
            credit = (min(w.link.burst, dirs["to_broker"])
                      + min(w.link.burst, dirs["to_client"]))
        else:
            # small frames, each on a bucket refilled meanwhile: every data
            # frame of the request-reply chain would pay its time on the wire
            credit = dirs["to_broker"] + dirs["to_client"]
        res["paced"] = res["elapsed"] + credit * 8.0 / RATE_BIT
        if res["rtt"]:
            B.log("%s: round trips, median (total): %s", mode,
                  ", ".join("%s %.1f ms (%.1f s)" % (k, v[0] * 1000, v[1])
                            for k, v in res["rtt"].items()))
        B.log("%s: all %d first values %.3f s after the first request (reply %.3f s, %s in "
              "it); payload %d + %d bytes, %d bytes on the link", mode, len(names),
              res["elapsed"], res["reply_s"], res["in_reply"], res["sent"], res["rx"],
              res["link"])
        return res
    finally:
        w.stop_clients()
        stack.stop()


def part_page(w):
    stack = Stack(w)
    pages = []
    for i in range(w.args.reps):
        B.log("---- page change, run %d of %d (fresh resolver, I/O servers, broker)", i + 1,
              w.args.reps)
        pages.append(page_run(w, stack, "page"))
    B.log("---- page change, baseline: EXISTS, RESOLVE, SUBSCRIBE per tag (fresh stack)")
    base = page_run(w, stack, "baseline")
    return pages, base


def part_idle(w):
    stack = Stack(w)
    res = {}
    B.log("---- idle (fresh stack)")
    stack.start()
    try:
        names = page_names()
        if not w.args.no_c_client:
            # The C client library (scadactl watch) on the same page, for
            # comparison: its idle bytes over the same window.
            path = os.path.join(w.work, "scadactl-watch.log")
            log = open(path, "ab")
            dur = int((w.args.idle_s + 30) * 1000)
            p = subprocess.Popen(w.link.netns_argv(
                [w.bins["scadactl"], "--config", w.site, "--endpoint", w.client_ep, "watch",
                 "--duration", str(dur)] + names), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL)
            log.close()
            try:
                def lines():
                    if p.poll() is not None:
                        raise RuntimeError("scadactl watch exited with %s: %s" % (
                            p.returncode, open(path, errors="replace").read()[-1000:]))
                    with open(path, errors="replace") as f:
                        return sum(1 for _ in f) >= len(names)
                B.wait_for("scadactl watch: every first value", lines, 60, 0.1)
                time.sleep(w.args.settle_s)
                c0 = w.link.counters()
                time.sleep(w.args.idle_s)
                c1 = w.link.counters()
                d = delta(c0, c1)
                res["c"] = dict(bytes=d["bytes"], packets=d["packets"], secs=c1["t"] - c0["t"],
                                kinds=w.sniffer.summary(c0["t"], c1["t"]))
                B.log("idle, scadactl watch: %d bytes in %.1f s", d["bytes"], c1["t"] - c0["t"])
            finally:
                if p.poll() is None:
                    p.terminate()
                    try:
                        p.wait(5)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait()
            time.sleep(1)

        c, _, _ = connect_client(w, "watch", names, "idle")
        c.cmd("go")
        c.expect("done", 60)
        time.sleep(w.args.settle_s)
        c.cmd("stats")
        s0 = c.expect("stats", 10)
        c0 = w.link.counters()
        time.sleep(w.args.idle_s)
        c1 = w.link.counters()
        c.cmd("stats")
        s1 = c.expect("stats", 10)
        d = delta(c0, c1)
        res["py"] = dict(bytes=d["bytes"], packets=d["packets"], secs=c1["t"] - c0["t"],
                         kinds=w.sniffer.summary(c0["t"], c1["t"]),
                         hb_sent=s1["heartbeats_sent"] - s0["heartbeats_sent"],
                         hb_rx=s1["heartbeats_rx"] - s0["heartbeats_rx"],
                         payload=(s1["sent_bytes"] - s0["sent_bytes"])
                         + (s1["rx_bytes"] - s0["rx_bytes"]))
        B.log("idle, python client: %d bytes in %.1f s", d["bytes"], c1["t"] - c0["t"])

        # A lost server: kill -9 io1, the client must see the quality go bad.
        res["kills"] = []
        for i in range(w.args.idle_kills):
            time.sleep(1.0 + random.uniform(0, PING_MS / 1000.0))  # a random phase
            r = kill_and_watch(w, stack, c, len(names))
            B.log("idle, kill %d: first bad %.3f s, all bad %.3f s, all good %.3f s after "
                  "the kill (the broker's first frame after %.3f s)", i + 1, r["first_bad"],
                  r["all_bad"], r["all_good"], r["broker_first"])
            r["failback_s"], r["failback_dips"] = fail_back(w, stack, c)
            res["kills"].append(r)
        return res
    finally:
        w.stop_clients()
        stack.stop()


def kill_and_watch(w, stack, c, ntags):
    """kill -9 io1 and follow the client until every tag is good again."""
    c.events(0)
    k0 = w.link.counters()
    t_kill = stack.kill_io1()
    evs = []
    deadline = t_kill + 30
    while time.monotonic() < deadline:
        ev = c.get(0.2)
        if ev is None:
            continue
        evs.append(ev)
        if ev["ev"] == "q" and ev["nbad"] == 0 and any(e.get("went_bad") for e in evs):
            break
    time.sleep(0.3)
    k1 = w.link.counters()
    r = kill_times(evs, t_kill, ntags)
    r["bytes"] = delta(k0, k1)["bytes"]
    first = w.sniffer.directions(t_kill, k1["t"])["first_from_broker"]
    r["broker_first"] = first - t_kill if first else float("nan")
    r["reason"] = next((e.get("reason") for e in evs if e["ev"] == "q" and e.get("went_bad")),
                       None)
    r["msgs"] = [(e["t"] - t_kill, e["size"], e["updates"], e["went_bad"], e["recovered"])
                 for e in evs if e["ev"] == "q"]
    r["io2_active"] = stack.status("io2").get("tags_active")
    return r


def fail_back(w, stack, c):
    """Restart io1; wait until it is the best offer again and io2 polls
    nothing. Returns the seconds from the restart until io2 was released
    and the quality dips the client saw meanwhile."""
    time.sleep(0.5)
    c.events(0)
    t_back = time.monotonic()
    stack.start_io("io1")
    stack.wait_primary()
    try:
        B.wait_for("io2 released", lambda: stack.status("io2").get("tags_active") == 0,
                   w.args.failback_timeout_s, 0.05)
    except TimeoutError:
        raise RuntimeError("fail-back: io1 is the best offer again, but io2 still polls %s "
                           "tags %.0f s after io1 was restarted (io1 polls %s)"
                           % (stack.status("io2").get("tags_active"),
                              time.monotonic() - t_back, stack.status("io1").get("tags_active")))
    took = time.monotonic() - t_back
    time.sleep(1.0)
    dips = sum(e["went_bad"] for e in c.events(0.2) if e["ev"] == "q" and e["t"] >= t_back)
    return took, dips


def kill_times(evs, t_kill, ntags):
    nan = float("nan")
    r = dict(first_bad=nan, all_bad=nan, first_good=nan, all_good=nan, max_bad=0)
    seen_bad = False
    for e in evs:
        if e["ev"] != "q" or e["t"] < t_kill:
            continue
        dt = e["t"] - t_kill
        r["max_bad"] = max(r["max_bad"], e["nbad"])
        if e["went_bad"] and not seen_bad:
            seen_bad = True
            r["first_bad"] = dt
        if seen_bad and e["nbad"] >= ntags and r["all_bad"] != r["all_bad"]:
            r["all_bad"] = dt
        if seen_bad and e["recovered"] and r["first_good"] != r["first_good"]:
            r["first_good"] = dt
        if seen_bad and e["nbad"] == 0 and r["all_good"] != r["all_good"]:
            r["all_good"] = dt
    return r


def part_failover(w):
    stack = Stack(w)
    B.log("---- failover (fresh stack), %d runs", w.args.failover_runs)
    stack.start()
    runs = []
    names = ramp_names()
    try:
        c, _, _ = connect_client(w, "watch", names, "failover")
        c.cmd("go")
        c.expect("done", 60)
        for i in range(w.args.failover_runs):
            B.wait_for("io2 idle (no tag polled there)",
                       lambda: stack.status("io2").get("tags_active") == 0, 20, 0.1)
            time.sleep(1.0 + random.uniform(0, PING_MS / 1000.0))  # a random phase
            r = kill_and_watch(w, stack, c, len(names))
            r["failback_s"], r["failback_dips"] = fail_back(w, stack, c)
            runs.append(r)
            B.log("failover run %d: bad %.3f s, first good from io2 %.3f s, all good %.3f s "
                  "after the kill; io2 polled %s tags; fail-back dips %d", i + 1,
                  r["first_bad"], r["first_good"], r["all_good"], r["io2_active"],
                  r["failback_dips"])
        return runs
    finally:
        w.stop_clients()
        stack.stop()


# ---------------------------------------------------------------- report

def med(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def worst(xs):
    xs = [x for x in xs if x == x]
    return max(xs) if xs else float("nan")


def ok(b):
    return "PASS" if b else "MISS"


def n(x):
    return "{:,}".format(x)


def report(w, pages, base, idle, fo):
    a = w.args
    print()
    print("PUBSUB  %s" % time.strftime("%Y-%m-%d %H:%M:%S"))
    print("machine: %s" % B.machine())
    print("binaries: %s" % w.build)
    print("link: veth %s (host, %s, the broker's end) <-> %s (netns %s, %s, the client); "
          "tc tbf %s on each end, so 56,000 bit/s each way; bytes on the link = the host "
          "end's rx_bytes + tx_bytes (Ethernet frames: ARP, TCP/IP, ZMTP included)"
          % (w.link.host, w.link.host_ip, w.link.peer, w.link.ns, w.link.peer_ip,
             " ".join(TBF)))
    print("site: %d devices x %d tags (PLCnnn, const values: half uint16, half float32), "
          "%d ramp devices x %d tags (scan %d ms), every device on io1 (priority 1) and io2 "
          "(priority 2); ping_time_ms %d; broker defaults (on demand, update_interval_ms 100, "
          "initial_wait_ms 200, client_heartbeat_ms %d)"
          % (NDEV, TAGS_PER_DEV, NRAMP, RAMP_TAGS, RAMP_SCAN_MS, PING_MS, HEARTBEAT_MS))
    print("client: bench/pubsub_client.py in the namespace (pyzmq + protobuf; heartbeats as "
          "the C client library)")
    if pages is not None:
        names = page_names()
        bucket_s = w.link.burst * 8.0 / RATE_BIT
        print()
        print("PAGE CHANGE: %d tags never resolved (%d devices x %d, names %d..%d chars), "
              "a fresh stack per run; time from the first request to the last first value"
              % (len(names), NDEV, PAGE_PER_DEV, min(map(len, names)), max(map(len, names))))
        print("tbf passes a full bucket (%d bytes, %.3f s of the line) at once after an idle "
              "spell; 'paced' adds that back: the time on a line that spends 1/7,000 s on "
              "every byte (page: one bucket each way; baseline: every data frame, each sent "
              "on a refilled bucket)" % (w.link.burst, bucket_s))
        rows = []
        for i, r in enumerate(pages + [base]):
            label = "one SUBSCRIBE, run %d" % (i + 1) if r["mode"] == "page" else \
                "per tag EXISTS, RESOLVE, SUBSCRIBE (baseline)"
            rows.append([label, "%.3f" % r["elapsed"], "%.3f" % r["paced"],
                         "%.3f" % r["reply_s"], r["in_reply"],
                         "%s + %s" % (n(r["sent"]), n(r["rx"])), n(r["link"]),
                         "%.2fx" % (r["link"] / r["payload"]), n(r["msgs"]), n(r["packets"]),
                         "%.3f" % r["lb"], "%.2fx" % (r["paced"] / r["lb"])])
        print(B.table(rows, ["", "time s", "paced s", "reply s", "values in reply",
                             "payload sent + received", "bytes on link", "link/payload",
                             "messages", "packets", "lower bound s", "paced/bound"]))
        print()
        t = med([r["elapsed"] for r in pages])
        tp = med([r["paced"] for r in pages])
        i = min(range(len(pages)), key=lambda k: abs(pages[k]["elapsed"] - t))
        p = pages[i]
        lb_tbf = p["lb"] - (p["paced"] - p["elapsed"])
        print("page change: %.3f s through tbf (median of %d, worst %.3f s), %.3f s paced; "
              "%s bytes on the link (%.2fx the payload); lower bound %.3f s (%s payload bytes "
              "x 8 / 56,000 bit/s): paced %.2fx, measured %.2fx the bound less the two "
              "buckets (%.3f s)"
              % (t, len(pages), worst([r["elapsed"] for r in pages]), tp, n(p["link"]),
                 p["link"] / p["payload"], p["lb"], n(p["payload"]), tp / p["lb"],
                 t / lb_tbf, lb_tbf))
        rtt = base.get("rtt") or {}
        print("baseline:    %.3f s through tbf, %.3f s paced, %s bytes on the link, %s "
              "messages: %.1fx the page change's time (%.1fx paced), %.1fx its bytes on the "
              "link; first values in the SUBSCRIBED replies: %d of %d"
              % (base["elapsed"], base["paced"], n(base["link"]), n(base["msgs"]),
                 base["elapsed"] / t, base["paced"] / tp, base["link"] / p["link"],
                 base["in_reply"], len(names)))
        if rtt:
            print("baseline round trips, median (sum over %d tags): %s"
                  % (len(names), ", ".join("%s %.1f ms (%.1f s)" % (k, v[0] * 1000, v[1])
                                           for k, v in rtt.items())))
        print("connection set-up (not counted above): %.3f s, %s bytes on the link "
              "(TCP handshake, ZMTP greeting and READY)"
              % (med([r["setup_s"] for r in pages]), n(p["setup_bytes"])))
        print("target: page change < %.1f s: %s (paced %.3f s; through tbf %.3f s)"
              % (TARGET_PAGE_S, ok(tp < TARGET_PAGE_S), tp, t))
        print("target: page change <= %.1fx the lower bound: %s (paced %.2fx; through tbf "
              "%.2fx the bound less the buckets)"
              % (TARGET_PAGE_RATIO, ok(tp / p["lb"] <= TARGET_PAGE_RATIO), tp / p["lb"],
                 t / lb_tbf))
    if idle is not None:
        print()
        print("IDLE: the %d-tag page subscribed, values constant, ping_time_ms %d, io1 + io2; "
              "measured over %.0f s after %.0f s settled" % (len(page_names()), PING_MS,
                                                             a.idle_s, a.settle_s))
        rows = []
        kinds = set()
        for key in ("py", "c"):
            if key in idle:
                kinds |= set(idle[key]["kinds"])
        order = sorted(kinds)
        for key, label in (("py", "bench client (Python)"), ("c", "scadactl watch (C library)")):
            if key not in idle:
                continue
            r = idle[key]
            bps = r["bytes"] / r["secs"]
            r["bps"] = bps
            rows.append([label, "%.1f" % bps, "%.2f" % (r["packets"] / r["secs"]),
                         "%.2fx" % (bps / FIELD_BYTES_S)]
                        + ["%.1f" % (r["kinds"].get(k, [0, 0])[1] / r["secs"]) for k in order])
        print(B.table(rows, ["client", "bytes/s", "packets/s", "vs field 328"]
                      + ["%s B/s" % k for k in order]))
        r = idle["py"]
        print()
        print("idle: %.1f bytes/s on the link (%s bytes in %.1f s), %.2fx the field figure "
              "4 x 82 = %d bytes/s; HEARTBEAT messages in the window: %d sent, %d received"
              % (r["bps"], n(r["bytes"]), r["secs"], r["bps"] / FIELD_BYTES_S, FIELD_BYTES_S,
                 r["hb_sent"], r["hb_rx"]))
        if "c" in idle:
            print("idle, C client library (scadactl watch): %.1f bytes/s"
                  % idle["c"]["bps"])
        kills = idle["kills"]
        bound = 2 * PING_MS / 1000.0
        print()
        print("LOST SERVER while idle: kill -9 of io1 at a random phase of its heartbeats, %d "
              "times (io1 restarted and failed back in between); seconds after the kill"
              % len(kills))
        rows = []
        for i, k in enumerate(kills):
            bad = [m for m in k["msgs"] if m[3]]
            rows.append([i + 1, "%.3f" % k["broker_first"], "%.3f" % k["first_bad"],
                         "%.3f" % k["all_bad"], "%.3f" % k["first_good"], "%.3f" % k["all_good"],
                         n(bad[0][1]) if bad else "-", n(k["bytes"]), "%.2f" % k["failback_s"],
                         k["failback_dips"]])
        print(B.table(rows, ["kill", "broker's first frame", "first bad at client",
                             "all bad", "first good (io2)", "all good", "bad message bytes",
                             "bytes on link", "fail-back s", "fail-back dips"]))
        fb = [k["first_bad"] for k in kills]
        print()
        print("lost server: the client saw the bad quality %.3f s after the kill (median of %d, "
              "worst %.3f s); the broker's first frame left %.3f s after it (median); every "
              "bad update carries the reason %r"
              % (med(fb), len(kills), worst(fb), med([k["broker_first"] for k in kills]),
                 kills[0]["reason"]))
        fbs = [k["failback_s"] for k in kills]
        print("fail-back (idle page, values constant): io1 restarted until io2 released: "
              "median %.2f s, worst %.2f s; quality dips seen by the client in %d of %d"
              % (med(fbs), worst(fbs), sum(1 for k in kills if k["failback_dips"]), len(kills)))
        print("target: idle <= %.0f bytes/s: %s (%.1f)" % (TARGET_IDLE,
                                                          ok(r["bps"] <= TARGET_IDLE), r["bps"]))
        print("target: lost server noticed by the client within 2 x ping_time = %.1f s: %s "
              "(worst %.3f s, median %.3f s)" % (bound, ok(worst(fb) <= bound), worst(fb),
                                                 med(fb)))
    if fo is not None:
        print()
        print("FAILOVER: %d ramping tags (%d devices, scan %d ms), the client behind the "
              "link; kill -9 of io1 at a random phase, until the first good value from io2 "
              "after the bad one; io1 restarted and failed back between runs"
              % (NRAMP * RAMP_TAGS, NRAMP, RAMP_SCAN_MS))
        rows = []
        for i, r in enumerate(fo):
            rows.append([i + 1, "%.3f" % r["first_bad"], "%.3f" % r["first_good"],
                         "%.3f" % r["all_good"], r["io2_active"], "%.2f" % r["failback_s"],
                         r["failback_dips"]])
        print(B.table(rows, ["run", "bad s", "first good s", "all good s", "io2 polled",
                             "fail-back s", "fail-back dips"]))
        g = [r["first_good"] for r in fo]
        print()
        bound = 2 * PING_MS / 1000.0
        print("failover: median %.3f s, worst %.3f s (kill -9 to the first good value from "
              "the standby, %d runs); 2 x ping_time %.1f s: median %.2fx, worst %.2fx; scan "
              "%d ms; bad seen after %.3f s median, all tags good after %.3f s median"
              % (med(g), worst(g), len(fo), bound, med(g) / bound, worst(g) / bound,
                 RAMP_SCAN_MS, med([r["first_bad"] for r in fo]),
                 med([r["all_good"] for r in fo])))
        print("fail-back (failover page, values ramping): io1 restarted until io2 released: "
              "median %.2f s, worst %.2f s; "
              "quality dips seen by the client in %d of %d fail-backs"
              % (med([r["failback_s"] for r in fo]), worst([r["failback_s"] for r in fo]),
                 sum(1 for r in fo if r["failback_dips"]), len(fo)))
    drops = w.link.qdisc_drops()
    print()
    print("tbf drops on the link during the whole run: %d packets" % drops)
    sys.stdout.flush()


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="1 page-change run, idle over 20 s, 3 failovers")
    ap.add_argument("--parts", default="page,idle,failover")
    ap.add_argument("--reps", type=int, default=None, help="page-change runs (default 3)")
    ap.add_argument("--idle-s", type=float, default=None, help="idle window (default 60 s)")
    ap.add_argument("--settle-s", type=float, default=5.0)
    ap.add_argument("--failover-runs", type=int, default=None, help="default 10")
    ap.add_argument("--idle-kills", type=int, default=None,
                    help="kill -9 of io1 after the idle window (default 5)")
    ap.add_argument("--no-c-client", action="store_true",
                    help="skip the idle figure of scadactl watch (the C client library)")
    ap.add_argument("--failback-timeout-s", type=float, default=45,
                    help="longest wait for io2 to be released after io1 came back")
    ap.add_argument("--log-level", default="info", help="of the resolver, I/O servers, broker")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = ap.parse_args()
    if args.reps is None:
        args.reps = 1 if args.quick else 3
    if args.idle_s is None:
        args.idle_s = 20.0 if args.quick else 60.0
    if args.failover_runs is None:
        args.failover_runs = 3 if args.quick else 10
    if args.idle_kills is None:
        args.idle_kills = 2 if args.quick else 5
    parts = set(args.parts.split(","))
    if parts - {"page", "idle", "failover"}:
        print("pubsub: unknown part(s) %s (expected page, idle, failover)"
              % ",".join(sorted(parts - {"page", "idle", "failover"})))
        return 2

    if os.geteuid() != 0:
        print("PUBSUB: skipped: needs root for the network namespace, veth pair and tc "
              "(run as root, e.g. sudo make bench)")
        return 0
    for tool in ("ip", "tc"):
        if not shutil.which(tool):
            print("PUBSUB: skipped: no %s (apt-get install iproute2)" % tool)
            return 0
    names = ["scada-resolver", "scada-broker", "scada-ioserver", "scada-devsim", "scadactl"]
    for exe in names:
        if not os.access(os.path.join(B.BIN, exe), os.X_OK):
            print("pubsub: %s is missing: run `make all`" % os.path.join(B.BIN, exe))
            return 1
    import redis as redislib
    B.on_signals_exit()

    work = tempfile.mkdtemp(prefix="bench-pubsub-")
    os.chmod(work, 0o755)
    w = World(args, work)
    w.log_level = ["--log-level", args.log_level]
    w.link = SlowLink()
    w.sniffer = None
    pages = base = idle = fo = None
    try:
        w.bins, w.build = B.snapshot_bins(work, names)
        pb = B.scada_pb2()
        w.pbdir = os.path.dirname(os.path.abspath(pb.__file__))
        w.link.up()
        redis_port = B.free_ports(1)
        dev_base = B.free_ports(NDEV + NRAMP)
        devsim_ctl = "tcp://127.0.0.1:%d" % B.free_ports(1)
        w.resolver_ep = "tcp://127.0.0.1:%d" % B.free_ports(1)
        bport = B.free_ports(1)
        w.broker_ep = "tcp://%s:%d" % (w.link.host_ip, bport)
        w.client_ep = w.broker_ep
        w.ios = {}
        for io in ("io1", "io2"):
            p = B.free_ports(2)
            w.ios[io] = {"name": io, "publish": "tcp://127.0.0.1:%d" % p,
                         "control": "tcp://127.0.0.1:%d" % (p + 1)}
        w.site_name = "benchps%d" % os.getpid()
        w.site = os.path.join(work, "site.yaml")
        write_site(w.site, w.site_name, redis_port, devsim_ctl, dev_base, w.resolver_ep,
                   w.broker_ep, [w.ios["io1"], w.ios["io2"]])
        B.redis_server(w.procs, redis_port)
        w.redis = redislib.Redis(host="127.0.0.1", port=redis_port, decode_responses=True)
        devsim = w.procs.start("devsim", [w.bins["scada-devsim"], "--config", w.site])
        dctl = B.DevsimControl(w.ctx, devsim_ctl)
        B.wait_for("devsim", lambda: w.procs.check_alive(devsim) or dctl.cmd("ping") == "pong",
                   30, 0.2)
        dctl.close()
        w.sniffer = Sniffer(w.link.host, bport)
        w.sniffer.start()
        if "page" in parts:
            pages, base = part_page(w)
        if "idle" in parts:
            idle = part_idle(w)
        if "failover" in parts:
            fo = part_failover(w)
        report(w, pages, base, idle, fo)
        if args.keep:
            B.log("work directory kept: %s", work)
        return 0
    finally:
        if w.sniffer:
            w.sniffer.stop = True
        w.stop_clients()
        w.procs.stop_all()
        w.link.down()
        w.ctx.destroy(linger=0)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("pubsub: interrupted")
        sys.exit(130)
    except (RuntimeError, TimeoutError, OSError, subprocess.CalledProcessError) as e:
        print("pubsub: could not run: %s" % e)
        sys.exit(1)
