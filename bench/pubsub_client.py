#!/usr/bin/python3
"""The client side of bench/pubsub.py: a broker client that runs inside the
benchmark's network namespace, behind the slow link, and reports what it
saw as one JSON object per line on stdout.

It speaks the client protocol of proto/scada.proto with pyzmq and Python
protobuf only (the approach of tests/system/pyclient.py), and behaves on the
wire like the C client library (docs/client.md): a DEALER with ZMTP
heartbeats every 3 x heartbeat_ms (timeout the same, TTL twice that), a
HEARTBEAT message only after heartbeat_ms of sending nothing.

    ip netns exec NS /usr/bin/python3 bench/pubsub_client.py --pb DIR \\
        --endpoint tcp://10.77.0.1:PORT --names FILE --mode page|baseline|watch

Sequence (stdin carries the parent's commands, one per line):
  1. connects; prints {"ev": "connected", "setup_s": ...} once the ZMTP
     handshake is done (nothing of the measurement has been sent yet);
  2. waits for "go", then
     page:     one SUBSCRIBE with every name (page 1);
     baseline: per name EXISTS, then RESOLVE, then SUBSCRIBE (page = its
               position), each waiting for its answer;
     watch:    as page;
     and prints {"ev": "done", ...} when every name has a good first value:
     elapsed time from the first request sent, protobuf bytes sent and
     received until then, messages;
  3. page, baseline: waits for "quit" (the parent reads the link counters
     first, so closing the connection is not counted) and exits.
     watch: stays subscribed, sends heartbeats when idle, and prints
     {"ev": "q", ...} for every message that changes a tag's quality
     (went_bad: good -> not good, recovered: not good -> good with a value,
     nbad: tags not good now); "stats" prints the counters; "quit" exits.
Times are time.monotonic() (CLOCK_MONOTONIC, shared with the parent).
"""
import argparse
import importlib
import json
import sys
import time

import zmq
import zmq.utils.monitor


def out(**fields):
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


class Rx:
    """A received BrokerMsg with its arrival time, size and the quality
    transitions it caused."""

    def __init__(self, msg, t, size):
        self.msg, self.t, self.size = msg, t, size
        self.went_bad = self.recovered = 0
        self.reason = next((u.reason for u in msg.updates if u.HasField("reason")), None)

    def __getattr__(self, name):
        return getattr(self.msg, name)

    def HasField(self, name):
        return self.msg.HasField(name)

    def __repr__(self):
        return str(self.msg).replace("\n", " ")


class Client:
    def __init__(self, pb, endpoint, name, heartbeat_ms):
        self.pb = pb
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        ivl = 3 * heartbeat_ms
        self.sock.setsockopt(zmq.HEARTBEAT_IVL, ivl)
        self.sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, ivl)
        self.sock.setsockopt(zmq.HEARTBEAT_TTL, min(2 * ivl, 6553500))
        self.monitor = self.sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        self.endpoint = endpoint
        self.name = name
        self.heartbeat_ms = heartbeat_ms
        self.last_tx = time.monotonic()
        self.next_id = 0
        self.sent_bytes = 0
        self.sent_msgs = 0
        self.rx_bytes = 0
        self.rx_msgs = 0
        self.heartbeats_sent = 0
        self.heartbeats_rx = 0
        self.ids = {}          # name -> tag id
        self.quality = {}      # tag id -> last quality
        self.first_good = {}   # tag id -> monotonic time of its first good value
        self.named = False

    def connect(self, timeout_s=15):
        t0 = time.monotonic()
        self.sock.connect(self.endpoint)
        if not self.monitor.poll(int(timeout_s * 1000)):
            raise TimeoutError("no ZMTP handshake with %s within %.0f s" % (self.endpoint,
                                                                             timeout_s))
        zmq.utils.monitor.recv_monitor_message(self.monitor)
        return time.monotonic() - t0

    def send(self, **fields):
        pb = self.pb
        # As the C library: the client name on the first message and on
        # every SUBSCRIBE.
        if not self.named or fields.get("kind") == pb.ClientRequest.SUBSCRIBE:
            fields["client"] = self.name
            self.named = True
        if fields.get("kind") != pb.ClientRequest.HEARTBEAT:
            self.next_id += 1
            fields["id"] = self.next_id
        data = pb.ClientRequest(**fields).SerializeToString()
        self.sock.send(data)
        self.sent_bytes += len(data)
        self.sent_msgs += 1
        self.last_tx = time.monotonic()
        return fields.get("id")

    def heartbeat_if_idle(self):
        if (time.monotonic() - self.last_tx) * 1000 >= self.heartbeat_ms:
            self.send(kind=self.pb.ClientRequest.HEARTBEAT)
            self.heartbeats_sent += 1

    def recv(self, timeout_ms):
        """One BrokerMsg (or None on timeout); updates are applied."""
        if not self.sock.poll(timeout_ms):
            return None
        data = self.sock.recv()
        now = time.monotonic()
        self.rx_bytes += len(data)
        self.rx_msgs += 1
        msg = Rx(self.pb.BrokerMsg.FromString(data), now, len(data))
        if msg.kind == self.pb.BrokerMsg.HEARTBEAT:
            self.heartbeats_rx += 1
        for u in msg.updates:
            good = u.quality == self.pb.GOOD and (u.HasField("integer") or u.HasField("number"))
            was = self.quality.get(u.tag_id)
            if good:
                self.first_good.setdefault(u.tag_id, now)
                if was is not None and was != self.pb.GOOD:
                    msg.recovered += 1
                self.quality[u.tag_id] = self.pb.GOOD
            else:
                if was == self.pb.GOOD:
                    msg.went_bad += 1
                self.quality[u.tag_id] = u.quality
        return msg

    def wait_reply(self, rid, deadline):
        while True:
            left = int((deadline - time.monotonic()) * 1000)
            if left <= 0:
                raise TimeoutError("no answer to request %d" % rid)
            msg = self.recv(left)
            if msg is not None and msg.kind != self.pb.BrokerMsg.UPDATES and msg.id == rid:
                if msg.kind == self.pb.BrokerMsg.ERROR:
                    raise RuntimeError("request %d: ERROR %s" % (rid, msg.error))
                return msg

    def all_good(self, names):
        return all(n in self.ids and self.ids[n] in self.first_good for n in names)

    def nbad(self):
        return sum(1 for q in self.quality.values() if q != self.pb.GOOD)


def subscribe_page(c, names, deadline):
    pb = c.pb
    t0 = time.monotonic()
    rid = c.send(kind=pb.ClientRequest.SUBSCRIBE, page=1, names=names)
    req_bytes = c.sent_bytes
    in_reply = 0
    t_reply = None
    while not (t_reply is not None and c.all_good(names)):
        left = int((deadline - time.monotonic()) * 1000)
        if left <= 0:
            raise TimeoutError("page: %d of %d first values after %.1f s"
                               % (len(c.first_good), len(names), time.monotonic() - t0))
        msg = c.recv(left)
        if msg is None:
            continue
        if msg.kind == pb.BrokerMsg.ERROR and msg.id in (0, rid):
            raise RuntimeError("SUBSCRIBE: ERROR %s" % msg.error)
        if msg.kind == pb.BrokerMsg.SUBSCRIBED and msg.id == rid:
            t_reply = msg.t
            in_reply = len(msg.updates)
            for n, tid in zip(names, msg.tag_ids):
                c.ids[n] = tid
            missing = [n for n in names if not c.ids.get(n)]
            if missing:
                raise RuntimeError("%d names not found, e.g. %s" % (len(missing), missing[0]))
    return dict(t0=t0, t_reply=t_reply, reply_s=t_reply - t0, in_reply=in_reply,
                req_bytes=req_bytes)


def baseline(c, names, deadline):
    """Per name: EXISTS, RESOLVE, SUBSCRIBE (its own page), each waiting for
    its answer: three round trips per tag."""
    pb = c.pb
    t0 = time.monotonic()
    rtt = {"exists": [], "resolve": [], "subscribe": []}
    in_reply = 0
    for i, n in enumerate(names):
        t = time.monotonic()
        rid = c.send(kind=pb.ClientRequest.EXISTS, names=[n])
        rep = c.wait_reply(rid, deadline)
        rtt["exists"].append(rep.t - t)
        if rep.kind != pb.BrokerMsg.EXISTS_REPLY or list(rep.found) != [True]:
            raise RuntimeError("EXISTS %s: %s" % (n, rep))
        t = time.monotonic()
        rid = c.send(kind=pb.ClientRequest.RESOLVE, names=[n])
        rep = c.wait_reply(rid, deadline)
        rtt["resolve"].append(rep.t - t)
        if rep.kind != pb.BrokerMsg.RESOLVED_REPLY or not rep.tag_ids or not rep.tag_ids[0]:
            raise RuntimeError("RESOLVE %s: %s" % (n, rep))
        t = time.monotonic()
        rid = c.send(kind=pb.ClientRequest.SUBSCRIBE, page=i + 1, names=[n])
        rep = c.wait_reply(rid, deadline)
        rtt["subscribe"].append(rep.t - t)
        if rep.kind != pb.BrokerMsg.SUBSCRIBED or not rep.tag_ids or not rep.tag_ids[0]:
            raise RuntimeError("SUBSCRIBE %s: %s" % (n, rep))
        in_reply += len(rep.updates)
        c.ids[n] = rep.tag_ids[0]
    t_last_reply = time.monotonic()
    while not c.all_good(names):
        left = int((deadline - time.monotonic()) * 1000)
        if left <= 0:
            raise TimeoutError("baseline: %d of %d first values" % (len(c.first_good),
                                                                   len(names)))
        c.recv(left)
    return dict(t0=t0, t_reply=t_last_reply, reply_s=t_last_reply - t0, in_reply=in_reply,
                req_bytes=None, rtt={k: [sorted(v)[len(v) // 2], sum(v)] for k, v in rtt.items()})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pb", required=True, help="directory holding scada_pb2.py")
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--names", required=True, help="file with one tag name per line")
    ap.add_argument("--mode", choices=("page", "baseline", "watch"), required=True)
    ap.add_argument("--heartbeat-ms", type=int, default=5000)
    ap.add_argument("--name", default="bench")
    ap.add_argument("--timeout-s", type=float, default=300)
    args = ap.parse_args()
    sys.path.insert(0, args.pb)
    pb = importlib.import_module("scada_pb2")
    with open(args.names) as f:
        names = [line.strip() for line in f if line.strip()]

    c = Client(pb, args.endpoint, args.name, args.heartbeat_ms)
    setup = c.connect()
    out(ev="connected", setup_s=setup, t=time.monotonic())
    line = sys.stdin.readline().strip()
    if line != "go":
        return 0
    deadline = time.monotonic() + args.timeout_s
    if args.mode == "baseline":
        r = baseline(c, names, deadline)
    else:
        r = subscribe_page(c, names, deadline)
    t_done = max(c.first_good[c.ids[n]] for n in names)
    out(ev="done", t=t_done, elapsed=t_done - r["t0"], t0=r["t0"], reply_s=r["reply_s"],
        in_reply=r["in_reply"], req_bytes=r["req_bytes"], sent_bytes=c.sent_bytes,
        rx_bytes=c.rx_bytes, sent_msgs=c.sent_msgs, rx_msgs=c.rx_msgs, tags=len(names),
        rtt=r.get("rtt"))

    poller = zmq.Poller()
    poller.register(c.sock, zmq.POLLIN)
    poller.register(sys.stdin.fileno(), zmq.POLLIN)
    while True:
        if args.mode == "watch":
            c.heartbeat_if_idle()
            wait = max(1, int(c.heartbeat_ms - (time.monotonic() - c.last_tx) * 1000))
        else:
            wait = 1000
        ready = dict(poller.poll(min(wait, 1000)))
        if c.sock in ready:
            while True:
                msg = c.recv(0)
                if msg is None:
                    break
                if msg.went_bad or msg.recovered:
                    out(ev="q", t=msg.t, went_bad=msg.went_bad, recovered=msg.recovered,
                        nbad=c.nbad(), size=msg.size, updates=len(msg.updates),
                        reason=msg.reason)
        if sys.stdin.fileno() in ready:
            line = sys.stdin.readline()
            cmd = line.strip()
            if not line or cmd == "quit":
                break
            if cmd == "stats":
                out(ev="stats", t=time.monotonic(), sent_bytes=c.sent_bytes,
                    sent_msgs=c.sent_msgs, rx_bytes=c.rx_bytes, rx_msgs=c.rx_msgs,
                    heartbeats_sent=c.heartbeats_sent, heartbeats_rx=c.heartbeats_rx,
                    nbad=c.nbad())
    c.sock.close(0)
    c.monitor.close(0)
    c.ctx.term()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except (RuntimeError, TimeoutError, OSError) as e:
        out(ev="error", error=str(e))
        sys.exit(1)
