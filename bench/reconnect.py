#!/usr/bin/python3
"""Reconnect time of a restarted device against the number of silent devices.

Seed 000: with enough dead devices, connection attempts to them filled every
half-open slot and a device that came back was never reconnected. This
benchmark measures how long a device that was online a moment ago takes to
be polled again after it comes back, while 0, 100, 1,000 and 5,000 other
devices are network-silent, with connect_window 10.

Setup (one run per N, a fresh I/O server each time):
  - silent devices live at 127.77.X.Y:502; an iptables rule drops their SYNs
    (`iptables -I OUTPUT -d 127.77.0.0/16 -p tcp --syn -j DROP`), so every
    attempt to them hangs until the I/O server's connect timeout (3000 ms):
    exactly a dead field device. The rule is removed at exit, also on Ctrl-C,
    SIGTERM or an error.
  - live devices live0..live4 on 127.0.0.1, served by one scada-devsim
    (--only, so it does not try to serve the silent addresses).
  - I/O server: connect_window 10, connect_timeout_ms 3000, reconnect_min_ms
    1000, scan 500 ms; a private redis-server.

Per N: start the I/O server; wait until the live devices are online and, for
fairness, until every silent device has been tried at least once (its Redis
device key shows a failure or an attempt in flight). At N=5,000 discovery
alone would take 5000/8 x 3 s = 31 min, so there it waits only until the
window's dead-probe slots have been full for 15 s and reports how many silent
devices had been tried when it measured: the restart then competes with an
ongoing discovery, the hardest case. Then REPS times: `refuse live0` in
devsim (its connection is closed and new ones are refused: the I/O server
sees it offline and its tags go bad), wait 5 s, `normal live0`, and measure
the time from sending `normal` until the first GOOD value of a live0 tag
arrives on the I/O server's PUB socket (decoded with protobuf).

Prints median and worst per N and the ratio to the N=0 median. Target (issue
2): flat, at most 1.5x the 0-silent median at 5,000: PASS/MISS. Exit 0
either way; 1 if it could not run. Needs root (iptables): otherwise it says it
was skipped and exits 0.

    /usr/bin/python3 bench/reconnect.py [--counts 0,100,1000,5000] [--reps 5] [--keep]
"""
import argparse
import atexit
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

SILENT_NET = "127.77.0.0/16"
NLIVE = 5
TARGET_RATIO = 1.5
WINDOW = 10
CONNECT_TIMEOUT_MS = 3000
RECONNECT_MIN_MS = 1000
SCAN_MS = 500
DOWN_S = 5.0


def silent_addr(i):
    """127.77.X.Y for silent device i (Y 1..250)."""
    return "127.77.%d.%d" % (i // 250, i % 250 + 1)


def write_site(path, site_name, nsilent, live_base, pub, ctl, redis_port, devsim_ctl):
    out = []
    w = out.append
    w("site: %s\n" % site_name)
    w("redis: {host: 127.0.0.1, port: %d}\n" % redis_port)
    w("security: {plain: true}   # the plain data path is what is measured\n")
    w("devsim: {control: \"%s\"}\n" % devsim_ctl)
    w("ioservers:\n")
    w("  - {name: io1, publish: \"%s\", control: \"%s\", connect_window: %d,\n"
      "     connect_timeout_ms: %d, reconnect_min_ms: %d, always_scan: true}\n"
      % (pub, ctl, WINDOW, CONNECT_TIMEOUT_MS, RECONNECT_MIN_MS))
    w("channels:\n")
    w("  - name: live\n    type: network\n    devices:\n")
    for i in range(NLIVE):
        w("      - name: live%d\n        address: 127.0.0.1:%d\n        servers: [io1]\n"
          "        scan_ms: %d\n        tags:\n" % (i, live_base + i, SCAN_MS))
        w("          - {name: LIVE%d.RAMP, address: \"hr:0\", sim: {kind: ramp, min: 0, "
          "max: 1000, period_ms: 10000}}\n" % i)
        w("          - {name: LIVE%d.CONST, address: \"hr:1\", sim: {kind: const, "
          "initial: 42}}\n" % i)
    if nsilent:
        w("  - name: dead\n    type: network\n    devices:\n")
        for i in range(nsilent):
            w("      - {name: s%04d, address: \"%s:502\", servers: [io1], scan_ms: %d,\n"
              "         tags: [{name: S%04d.V, address: \"hr:0\"}]}\n"
              % (i, silent_addr(i), SCAN_MS, i))
    with open(path, "w") as f:
        f.write("".join(out))


class Firewall:
    """The SYN-dropping rule for the silent network; removed at exit."""

    def __init__(self):
        self.spec = ["OUTPUT", "-d", SILENT_NET, "-p", "tcp", "--syn", "-m", "comment",
                     "--comment", "scada-bench-reconnect-%d" % os.getpid(), "-j", "DROP"]
        self.added = False
        atexit.register(self.remove)

    def add(self):
        subprocess.run(["iptables", "-I"] + self.spec, check=True)
        self.added = True
        B.log("iptables: dropping SYNs to %s", SILENT_NET)

    def remove(self):
        if self.added:
            r = subprocess.run(["iptables", "-D"] + self.spec, capture_output=True, text=True)
            if r.returncode == 0:
                self.added = False
                B.log("iptables: rule for %s removed", SILENT_NET)
            else:
                sys.stderr.write("reconnect: could not remove the iptables rule (%s): run\n"
                                 "  iptables -D %s\n" % (r.stderr.strip(), " ".join(self.spec)))


class Watcher(threading.Thread):
    """SUB on the I/O server's PUB socket: records, with arrival time, every
    value of one device's tags and its DEVICE_STATE events."""

    def __init__(self, ctx, endpoint, device, prefix):
        super().__init__(daemon=True)
        self.pb = B.scada_pb2()
        self.sock = ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"V")
        self.sock.setsockopt(zmq.SUBSCRIBE, b"E")
        self.sock.connect(endpoint)
        self.device = device
        self.prefix = prefix
        self.lock = threading.Lock()
        self.values = []  # (t, quality)
        self.events = []  # (t, device_state)
        self.stop = False

    def run(self):
        pb = self.pb
        key = self.prefix.encode()
        while not self.stop:
            if not self.sock.poll(100):
                continue
            while True:
                try:
                    topic, body = self.sock.recv_multipart(zmq.NOBLOCK)[:2]
                except zmq.Again:
                    break
                t = time.monotonic()
                if topic == b"V":
                    if key not in body:
                        continue
                    batch = pb.ValueBatch()
                    batch.ParseFromString(body)
                    with self.lock:
                        for v in batch.values:
                            if v.tag.startswith(self.prefix):
                                self.values.append((t, v.quality))
                elif topic == b"E":
                    batch = pb.EventBatch()
                    batch.ParseFromString(body)
                    with self.lock:
                        for e in batch.events:
                            if e.kind == pb.Event.DEVICE_STATE and e.device == self.device:
                                self.events.append((t, e.device_state))
        self.sock.close()

    def first_value(self, since, good):
        GOOD = self.pb.GOOD
        with self.lock:
            for t, q in self.values:
                if t >= since and ((q == GOOD) == good):
                    return t
        return None

    def first_event(self, since, state):
        with self.lock:
            for t, s in self.events:
                if t >= since and s == state:
                    return t
        return None


class SynSniffer(threading.Thread):
    """Timestamps every TCP SYN the I/O server sends to one 127.0.0.1 port
    (a packet socket on lo; root only). While the device refuses, each SYN is
    one reconnect attempt, so this shows the I/O server's retry rhythm from
    the outside, and lets `normal` be sent at a known phase of it."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
        self.sock.bind(("lo", 0))
        self.sock.settimeout(0.1)
        self.lock = threading.Lock()
        self.syns = []
        self.stop = False

    def run(self):
        want = socket.inet_aton("127.0.0.1")
        while not self.stop:
            try:
                pkt, addr = self.sock.recvfrom(256)
            except socket.timeout:
                continue
            t = time.monotonic()
            # Bound to ETH_P_IP, a packet socket sees the receiving copy on lo only.
            if addr[2] != socket.PACKET_HOST or len(pkt) < 14 + 20 + 20:
                continue
            ip = pkt[14:]
            ihl = (ip[0] & 0x0F) * 4
            if ip[0] >> 4 != 4 or ip[9] != 6 or ip[16:20] != want or len(ip) < ihl + 14:
                continue
            tcp = ip[ihl:]
            dport = tcp[2] << 8 | tcp[3]
            flags = tcp[13]
            if dport == self.port and flags & 0x02 and not flags & 0x10:  # SYN, not SYN-ACK
                with self.lock:
                    self.syns.append(t)
        self.sock.close()

    def between(self, t0, t1):
        with self.lock:
            return [t for t in self.syns if t0 <= t < t1]

    def wait_next(self, since, timeout):
        """The first SYN at or after `since`, waiting up to `timeout` s for it."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                for t in self.syns:
                    if t >= since:
                        return t
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.002)


def silent_tried(r, site_name, nsilent):
    """How many silent devices have been tried: a failure recorded, or an
    attempt in flight (from their Redis device keys)."""
    if nsilent == 0:
        return 0
    pipe = r.pipeline(transaction=False)
    for i in range(nsilent):
        pipe.hmget("scada:%s:ioserver:io1:device:s%04d" % (site_name, i), "failures", "state")
    tried = 0
    for failures, state in pipe.execute():
        if (failures and int(failures) > 0) or state == b"connecting":
            tried += 1
    return tried


def run_n(args, procs, ctx, r, dctl, sniffer, bins, live_base, redis_port, devsim_ctl,
          nsilent):
    site_name = "benchrc%d" % nsilent
    ports = B.free_ports(2)
    pub = "tcp://127.0.0.1:%d" % ports
    ctl = "tcp://127.0.0.1:%d" % (ports + 1)
    site = os.path.join(procs.workdir, "site-%d.yaml" % nsilent)
    write_site(site, site_name, nsilent, live_base, pub, ctl, redis_port, devsim_ctl)
    watcher = Watcher(ctx, pub, "live0", "LIVE0.")
    watcher.start()
    io = procs.start("ioserver-%d" % nsilent,
                     [bins["scada-ioserver"], "--config", site, "--name", "io1"])
    ioc = B.IoControl(ctx, ctl)
    res = {"n": nsilent, "times": [], "online_times": []}
    try:
        t0 = time.monotonic()

        def st():
            procs.check_alive(io)
            try:
                return ioc.status(3000)
            except TimeoutError:
                return None

        B.wait_for("the %d live devices online" % NLIVE,
                   lambda: (s := st()) and s["devices_online"] >= NLIVE, 120, 0.2)
        B.log("N=%d: live devices online after %.1f s", nsilent, time.monotonic() - t0)
        # Fairness: every silent device tried at least once (or, at 5,000, the
        # dead-probe slots full for a while).
        if nsilent and nsilent <= args.full_discovery_max:
            est = nsilent / (WINDOW - max(1, WINDOW // 5)) * CONNECT_TIMEOUT_MS / 1000.0
            B.log("N=%d: waiting until every silent device has been tried once "
                  "(about %.0f s)", nsilent, est)
            last_log = [time.monotonic()]

            def all_tried():
                procs.check_alive(io)
                n = silent_tried(r, site_name, nsilent)
                if time.monotonic() - last_log[0] > 30:
                    B.log("N=%d: %d/%d silent devices tried", nsilent, n, nsilent)
                    last_log[0] = time.monotonic()
                return n >= nsilent
            B.wait_for("every silent device tried", all_tried, est * 3 + 120, 1.0)
            res["wait"] = "all %d silent devices tried once" % nsilent
        elif nsilent:
            cap = WINDOW - max(1, WINDOW // 5)
            B.log("N=%d: waiting until connect_in_flight has been at its cap (%d dead probes) "
                  "for %.0f s", nsilent, cap, args.saturate_s)
            since = [None]

            def saturated():
                s = st()
                if s and s["connect_in_flight"] >= cap:
                    if since[0] is None:
                        since[0] = time.monotonic()
                    return time.monotonic() - since[0] >= args.saturate_s
                since[0] = None
                return False
            B.wait_for("the connect window saturated", saturated, 300, 0.5)
            res["wait"] = "dead-probe slots full for %.0f s" % args.saturate_s
        s = st()
        res["tried_before"] = silent_tried(r, site_name, nsilent)
        res["attempts_before"] = s["connect_attempts"]
        B.log("N=%d: %d/%d silent devices tried, %d attempts, in flight %d, queued %d; "
              "measuring %d restarts", nsilent, res["tried_before"], nsilent,
              s["connect_attempts"], s["connect_in_flight"], s["connect_queued"], args.reps)
        inflight = []
        pb = B.scada_pb2()
        res.update(retry_wait=[], syn_to_good=[], retry_intervals=[], aligned=0)
        for rep in range(args.reps):
            t_refuse = time.monotonic()
            dctl.cmd("refuse live0")
            time.sleep(DOWN_S)
            if watcher.first_value(t_refuse, good=False) is None:
                raise RuntimeError("live0's tags did not go bad within %.0f s of `refuse`"
                                   % DOWN_S)
            if not args.random_phase:
                # Send `normal` just after a refused attempt: the worst phase of
                # the retry rhythm, so samples differ only by the retry jitter.
                t_syn = sniffer.wait_next(time.monotonic(), 10)
                if t_syn is None:
                    B.log("N=%d rep %d: no reconnect attempt to live0 within 10 s: "
                          "sending `normal` anyway", nsilent, rep + 1)
                else:
                    res["aligned"] += 1
                    time.sleep(0.02)
            s = st()
            inflight.append(s["connect_in_flight"])
            t_normal = time.monotonic()
            dctl.cmd("normal live0")
            syns = sniffer.between(t_refuse, t_normal)
            res["retry_intervals"] += [b - a for a, b in zip(syns, syns[1:])]
            t_good = None
            deadline = t_normal + args.give_up_s
            while time.monotonic() < deadline:
                t_good = watcher.first_value(t_normal, good=True)
                if t_good is not None:
                    break
                time.sleep(0.005)
            if t_good is None:
                B.log("N=%d rep %d: no GOOD value of live0 within %.0f s", nsilent, rep + 1,
                      args.give_up_s)
                res["times"].append(float("inf"))
                continue
            dt = t_good - t_normal
            t_on = watcher.first_event(t_normal, pb.ONLINE)
            t_syn = sniffer.wait_next(t_normal, 0)
            res["times"].append(dt)
            res["online_times"].append(t_on - t_normal if t_on else float("nan"))
            if t_syn is not None and t_syn <= t_good:
                res["retry_wait"].append(t_syn - t_normal)
                res["syn_to_good"].append(t_good - t_syn)
            B.log("N=%d rep %d: GOOD value %.3f s after `normal` (next attempt after %s s, "
                  "online event %.3f s); retry intervals while down %s s; in flight %d",
                  nsilent, rep + 1, dt, "%.3f" % (t_syn - t_normal) if t_syn else "?",
                  (t_on - t_normal) if t_on else float("nan"),
                  " ".join("%.2f" % (b - a) for a, b in zip(syns, syns[1:])),
                  s["connect_in_flight"])
            time.sleep(args.settle_s)
        s = st()
        res["tried_after"] = silent_tried(r, site_name, nsilent)
        res["attempts_after"] = s["connect_attempts"]
        res["inflight"] = inflight
        res["starved"] = s["connect_starved"]
        return res
    finally:
        watcher.stop = True
        watcher.join(2)
        ioc.close()
        procs.stop(io)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--counts", default="0,100,1000,5000")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--full-discovery-max", type=int, default=1000,
                    help="largest N that waits for every silent device to be tried")
    ap.add_argument("--saturate-s", type=float, default=15)
    ap.add_argument("--settle-s", type=float, default=2)
    ap.add_argument("--give-up-s", type=float, default=60)
    ap.add_argument("--random-phase", action="store_true",
                    help="send `normal` at a random phase of the I/O server's retry rhythm "
                         "(default: just after a refused attempt)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = ap.parse_args()
    counts = [int(c) for c in args.counts.split(",")]

    if os.geteuid() != 0:
        print("RECONNECT: skipped: needs root to add the iptables rule that makes %s "
              "network-silent (run as root, e.g. sudo make bench)" % SILENT_NET)
        return 0
    if not shutil.which("iptables"):
        print("RECONNECT: skipped: no iptables (apt-get install iptables)")
        return 0
    for exe in ("scada-ioserver", "scada-devsim"):
        if not os.access(os.path.join(B.BIN, exe), os.X_OK):
            print("reconnect: %s is missing: run `make all`" % os.path.join(B.BIN, exe))
            return 1
    import redis as redislib
    B.on_signals_exit()

    work = tempfile.mkdtemp(prefix="bench-reconnect-")
    procs = B.Procs(work)
    fw = Firewall()
    ctx = zmq.Context()
    results = []
    sniffer = None
    try:
        bins, args.build = B.snapshot_bins(work, ["scada-ioserver", "scada-devsim"])
        fw.add()
        live_base = B.free_ports(NLIVE)
        redis_port = B.free_ports(1)
        devsim_ctl = "tcp://127.0.0.1:%d" % B.free_ports(1)
        B.redis_server(procs, redis_port)
        r = redislib.Redis(host="127.0.0.1", port=redis_port)
        # devsim serves only the live devices (the site of the largest N has them all).
        dsite = os.path.join(work, "site-devsim.yaml")
        write_site(dsite, "benchrcdevsim", 0, live_base, "tcp://127.0.0.1:1",
                   "tcp://127.0.0.1:2", redis_port, devsim_ctl)
        devsim = procs.start("devsim", [bins["scada-devsim"], "--config", dsite,
                                        "--only", ",".join("live%d" % i for i in range(NLIVE))])
        dctl = B.DevsimControl(ctx, devsim_ctl)
        sniffer = SynSniffer(live_base)  # live0's port
        sniffer.start()
        B.wait_for("devsim", lambda: procs.check_alive(devsim) or dctl.cmd("ping") == "pong",
                   30, 0.2)
        for n in counts:
            B.log("---- N=%d silent devices", n)
            results.append(run_n(args, procs, ctx, r, dctl, sniffer, bins, live_base,
                                 redis_port, devsim_ctl, n))
        dctl.close()
        report(args, results)
        if args.keep:
            B.log("work directory kept: %s", work)
        return 0
    finally:
        if sniffer:
            sniffer.stop = True
        procs.stop_all()
        fw.remove()
        ctx.destroy(linger=0)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def report(args, results):
    print()
    print("RECONNECT  %s" % time.strftime("%Y-%m-%d %H:%M:%S"))
    print("machine: %s" % B.machine())
    print("binaries: %s" % args.build)
    print("connect_window %d (%d slots for new/dead probes), connect_timeout_ms %d, "
          "reconnect_min_ms %d, scan %d ms; silent devices at %s (SYNs dropped by iptables)"
          % (WINDOW, WINDOW - max(1, WINDOW // 5), CONNECT_TIMEOUT_MS, RECONNECT_MIN_MS,
             SCAN_MS, SILENT_NET))
    print("measured: time from devsim `normal live0` (after %.0f s refused) to the first GOOD "
          "value of a live0 tag on the I/O server's PUB socket; %d restarts per N"
          % (DOWN_S, args.reps))
    if args.random_phase:
        print("phase: `normal` sent at a random moment of the I/O server's retry rhythm "
              "(samples spread over about 0..%.2f s by the phase alone)"
              % (RECONNECT_MIN_MS * 1.25 / 1000))
    else:
        print("phase: `normal` sent 20 ms after a refused reconnect attempt (seen on lo): the "
              "worst phase, so the next attempt is one retry interval (reconnect_min + 0..25 %% "
              "jitter = %.2f..%.2f s) away and samples differ only by that jitter"
              % (RECONNECT_MIN_MS / 1000, RECONNECT_MIN_MS * 1.25 / 1000))
    print("bound from issue 2: reconnect_min + its connect timeout + one scan")
    print()
    base = None
    rows = []
    for res in results:
        times = res["times"]
        m = med(times)
        if res["n"] == 0:
            base = m
        ivals = res["retry_intervals"]
        rows.append([
            "{:,}".format(res["n"]),
            "%.3f" % m,
            "%.3f" % max(times),
            "%.2fx" % (m / base) if base else "-",
            " ".join("%.2f" % t for t in times),
            "%.3f" % med(res["retry_wait"]),
            "%.3f" % med(res["syn_to_good"]),
            "%.2f / %.2f" % (med(ivals), max(ivals)) if ivals else "-",
            "%d/%d" % (res["tried_before"], res["n"]),
            ",".join(str(x) for x in res["inflight"]),
        ])
    print(B.table(rows, ["silent", "median s", "worst s", "vs 0", "samples s",
                         "to attempt s", "attempt to GOOD s", "retry every s (med/max)",
                         "tried before", "in flight at normal"]))
    print()
    print("to attempt: `normal` -> the I/O server's next SYN to live0; attempt to GOOD: that "
          "SYN -> first GOOD value (connect, first poll, publish); retry every: time between "
          "refused attempts while live0 was down; tried before: silent devices tried at least "
          "once when the measurement started; in flight: connect attempts in flight when "
          "`normal` was sent (window %d)" % WINDOW)
    for res in results:
        if res["n"]:
            print("N=%s: before measuring: %s; connect attempts %d -> %d over the "
                  "measurement, %d/%d silent tried at the end; starved at the end: %s"
                  % ("{:,}".format(res["n"]), res.get("wait", "-"), res["attempts_before"],
                     res["attempts_after"], res["tried_after"], res["n"], res["starved"]))
    big = results[-1]
    if base and big["n"] > 0:
        ratio = med(big["times"]) / base
        ok = ratio <= TARGET_RATIO
        print()
        print("target: median at %s silent <= %.1fx the 0-silent median: %s (%.2fx: %.3f s vs "
              "%.3f s)" % ("{:,}".format(big["n"]), TARGET_RATIO, "PASS" if ok else "MISS",
                           ratio, med(big["times"]), base))
    sys.stdout.flush()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("reconnect: interrupted")
        sys.exit(130)
    except (RuntimeError, TimeoutError, OSError, subprocess.CalledProcessError) as e:
        print("reconnect: could not run: %s" % e)
        sys.exit(1)
