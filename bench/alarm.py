#!/usr/bin/python3
"""Alarm latency at 10,000 tag changes/s (issue 5).

A simulated plant of D devices x T tags, every tag ramping 0..1000 so that
the site produces about 10,000 tag changes per second; every tag has a HI
alarm at 500 (deadband 0), so each tag raises and clears once per ramp
period, spread evenly over time. Running: scada-devsim, scada-resolver,
scada-ioserver io1, scada-broker b1, scada-alarm.

Measured, both from the same source timestamp (when the I/O server read the
value) to the moment a Python subscriber on this machine receives it:
- alarm: AlarmEvent RAISE/CLEAR on the alarm service's PUB socket
  (value_ts_ms is the source timestamp of the value that crossed the limit);
- anchor: the plain value update of the same tags through the broker
  (the same path minus the alarm service), from a client subscribed to
  every tag.
Both clocks are the same machine's CLOCK_REALTIME.

    /usr/bin/python3 bench/alarm.py [--seconds 20] [--devices 100] [--tags 100]
"""
import argparse
import os
import sys
import tempfile
import threading
import time

import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "system"))
import benchlib as B  # noqa: E402


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def write_site(path, name, ndev, ntags, base_port, redis_port, ep, scan_ms, period_ms):
    import yaml
    devices = []
    for d in range(ndev):
        tags = [{"name": "A%03d.T%03d" % (d, t), "address": "hr:%d" % t, "type": "uint16",
                 "sim": {"kind": "ramp", "min": 0, "max": 1000, "period_ms": period_ms,
                         # spread the crossings over the period
                         "initial": (d * ntags + t) * 1000.0 / (ndev * ntags)},
                 "alarms": {"hi": 500, "comm": False}} for t in range(ntags)]
        devices.append({"name": "a%03d" % d, "address": "127.0.0.1:%d" % (base_port + d),
                        "servers": ["io1"], "scan_ms": scan_ms, "tags": tags})
    doc = {"site": name, "redis": {"host": "127.0.0.1", "port": redis_port},
           "ping_time_ms": 1000,
           "devsim": {"control": ep["devsim"]},
           "resolver": {"endpoint": ep["resolver"]},
           "brokers": [{"name": "b1", "endpoint": ep["broker"], "update_interval_ms": 0}],
           "alarm": {"publish": ep["apub"], "control": ep["actl"],
                     "journal": os.path.join(os.path.dirname(path), "alarms.journal"),
                     "sync": "batch", "device_alarms": False},
           "security": {"plain": True},  # the plain data path is what is measured
           "ioservers": [{"name": "io1", "publish": ep["pub"], "control": ep["ctl"],
                          "connect_window": 50}],
           "channels": [{"name": "plant", "type": "network", "devices": devices}]}
    with open(path, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="measuring time")
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--tags", type=int, default=100, help="tags per device")
    ap.add_argument("--scan-ms", type=int, default=1000)
    args = ap.parse_args()
    B.on_signals_exit()
    pb = B.scada_pb2()
    from pyclient import PyClient
    work = tempfile.mkdtemp(prefix="bench-alarm-")
    procs = B.Procs(work)
    bins, what = B.snapshot_bins(work, ["scada-devsim", "scada-resolver", "scada-ioserver",
                                        "scada-broker", "scada-alarm"])
    ntags = args.devices * args.tags
    # Every tag changes every scan: ntags * 1000 / scan_ms changes per second.
    rate = ntags * 1000.0 / args.scan_ms
    period = 20000
    base = B.free_ports(args.devices)
    redis_port = B.free_ports(1)
    ep = {k: "tcp://127.0.0.1:%d" % B.free_ports(1)
          for k in ("devsim", "resolver", "broker", "apub", "actl", "pub", "ctl")}
    site = os.path.join(work, "site.yaml")
    write_site(site, "alarmbench", args.devices, args.tags, base, redis_port, ep, args.scan_ms,
               period)
    B.redis_server(procs, redis_port)
    ds = procs.start("devsim", [bins["scada-devsim"], "--config", site])
    time.sleep(0.5)
    procs.start("resolver", [bins["scada-resolver"], "--config", site])
    io = procs.start("io1", [bins["scada-ioserver"], "--config", site, "--name", "io1"])
    br = procs.start("broker", [bins["scada-broker"], "--config", site, "--name", "b1"])
    al = procs.start("alarm", [bins["scada-alarm"], "--config", site])
    ctx = zmq.Context()
    alarm_lat, value_lat = [], []
    lock = threading.Lock()
    measuring = threading.Event()
    stop = threading.Event()

    def alarm_sub():
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.RCVHWM, 1000000)
        s.setsockopt(zmq.SUBSCRIBE, b"A")
        s.connect(ep["apub"])
        while not stop.is_set():
            if not s.poll(100):
                continue
            frames = s.recv_multipart()
            now = time.time() * 1000.0
            ev = pb.AlarmEvent()
            ev.ParseFromString(frames[1])
            if measuring.is_set() and ev.HasField("value_ts_ms") and ev.kind in (0, 1):
                with lock:
                    alarm_lat.append(now - ev.value_ts_ms)
        s.close()

    th = threading.Thread(target=alarm_sub, daemon=True)
    th.start()
    B.wait_for("the I/O server", lambda: B.IoControl(ctx, ep["ctl"]).status(), 20,
               alive=lambda: procs.check_alive(ds, io, br, al))
    B.log("letting the alarm service subscribe its %d tags", ntags)
    time.sleep(3 * args.scan_ms / 1000.0 + 3)
    # Phase 1: the alarm path alone (one light receiving thread).
    with lock:
        alarm_lat.clear()
    cpu0 = B.proc_cpu_s(al.pid)
    t0 = time.time()
    measuring.set()
    time.sleep(args.seconds)
    measuring.clear()
    t1 = time.time()
    cpu1 = B.proc_cpu_s(al.pid)
    stop.set()
    th.join(2)
    # Phase 2: the anchor, a client of every tag through the same broker.
    B.log("phase 2: plain value updates of every tag through the broker")
    names = ["A%03d.T%03d" % (d, t) for d in range(args.devices) for t in range(args.tags)]
    client = PyClient(pb, ep["broker"], "bench-anchor")
    for i in range(0, len(names), 10000):
        client.subscribe(1 + i // 10000, names[i:i + 10000], timeout=30)
    time.sleep(2 * args.scan_ms / 1000.0 + 1)
    n0 = len(client.updates)
    t2 = time.time()
    time.sleep(args.seconds)
    t3 = time.time()
    with client.cond:
        ups = client.updates[n0:]
    off = time.time() - time.monotonic()
    for u in ups:
        if u.value is not None and u.quality == 0 and u.ts > 0:
            value_lat.append((u.t + off) * 1000.0 - u.ts)
    changes = len(ups) / (t3 - t2)
    procs.check_alive(ds, io, br, al)
    client.stop()
    with lock:
        a = list(alarm_lat)
    print("# alarm latency, %s; %s" % (B.machine(), what))
    print("site: %d devices x %d tags, scan %d ms: %.0f tag changes/s configured, "
          "%.0f/s received by the anchor client" % (args.devices, args.tags, args.scan_ms, rate,
                                                    changes))
    print(B.table([
        ["alarm event (source ts -> alarm PUB received)", len(a), "%.1f" % pct(a, 50),
         "%.1f" % pct(a, 99), "%.1f" % (max(a) if a else float("nan"))],
        ["value update (source ts -> broker client received)", len(value_lat),
         "%.1f" % pct(value_lat, 50), "%.1f" % pct(value_lat, 99),
         "%.1f" % (max(value_lat) if value_lat else float("nan"))],
    ], ["path", "samples", "median ms", "p99 ms", "max ms"]))
    p99 = pct(a, 99)
    print("alarm p99 %.1f ms (target < 50 ms: %s); alarm/value p99 ratio %.2f; alarm service "
          "CPU %.1f%% of one core" % (p99, "PASS" if p99 < 50 else "MISS",
                                       p99 / max(pct(value_lat, 99), 0.001),
                                       100.0 * (cpu1 - cpu0) / (t1 - t0)))
    procs.stop_all()


if __name__ == "__main__":
    main()
