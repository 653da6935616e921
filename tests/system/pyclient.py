"""An independent client of the broker protocol, written from the
documentation in proto/scada.proto with pyzmq and Python protobuf only.

It shares no code with the C client library; tests and benchmarks use it to
show the wire protocol is what the documentation says.
"""

import threading
import time

import zmq


class Update:
    __slots__ = ("t", "tag_id", "value", "quality", "ts", "reason")

    def __init__(self, t, tag_id, value, quality, ts, reason):
        self.t, self.tag_id, self.value = t, tag_id, value
        self.quality, self.ts, self.reason = quality, ts, reason

    def __repr__(self):
        return "Update(id=%d value=%r q=%d ts=%d %s)" % (self.tag_id, self.value, self.quality,
                                                         self.ts, self.reason or "")


def decode_updates(pb, msg, now):
    """The Update list of a BrokerMsg as Update objects (value None when the
    broker has none; timestamps absolute)."""
    out = []
    prev = None
    for u in msg.updates:
        reason = prev if u.same_reason else (u.reason if u.HasField("reason") else None)
        prev = reason
        if u.HasField("integer"):
            value = u.integer
        elif u.HasField("number"):
            value = u.number
        else:
            value = None
        ts = msg.base_ts + u.ts
        out.append(Update(now, u.tag_id, value, u.quality, ts, reason))
    return out


class PyClient:
    """A DEALER on the broker's endpoint. A thread receives everything;
    requests wait for their answer by id.

    `missed` lists (receive time, count) for every message that carried
    BrokerMsg.missed: the broker's queue to us was full and it held back or
    coalesced away `count` updates; the current values follow. `on_message`
    (optional) is called in the receiving thread with (msg, updates, t) for
    every message, before it is recorded."""

    def __init__(self, pb, endpoint, name="pyclient", heartbeat_ms=None, on_message=None):
        self.pb = pb
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if heartbeat_ms:
            self.sock.setsockopt(zmq.HEARTBEAT_IVL, 3 * heartbeat_ms)
            self.sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 9 * heartbeat_ms)
            self.sock.setsockopt(zmq.HEARTBEAT_TTL, 9 * heartbeat_ms)
        self.sock.connect(endpoint)
        self.name = name
        self.heartbeat_ms = heartbeat_ms
        self.lock = threading.RLock()  # predicates of wait() read under it
        self.cond = threading.Condition(self.lock)
        self.replies = {}       # id -> BrokerMsg
        self.updates = []       # every Update received, in order
        self.latest = {}        # tag_id -> Update
        self.ids = {}           # name -> tag_id
        self.errors = []        # ERROR messages without a waiting request
        self.heartbeats = 0
        self.messages = 0
        self.missed = []        # (t, count) per message that said updates were missed
        self.on_message = on_message
        self.last_tx = time.monotonic()
        self._id = 0
        self._send_lock = threading.Lock()
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    # ------------------------------------------------------------ plumbing

    def _run(self):
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        while not self._stop:
            if self.heartbeat_ms and (time.monotonic() - self.last_tx) * 1000 >= self.heartbeat_ms:
                self.send(kind=self.pb.ClientRequest.HEARTBEAT)
            try:
                events = dict(poller.poll(20))
            except zmq.ZMQError:
                return
            if self.sock not in events:
                continue
            with self._send_lock:
                try:
                    frames = self.sock.recv_multipart(zmq.NOBLOCK)
                except zmq.ZMQError:
                    continue
            self._handle(frames)

    def _handle(self, frames):
        pb = self.pb
        now = time.monotonic()
        msg = pb.BrokerMsg()
        msg.ParseFromString(frames[-1])
        ups = (decode_updates(pb, msg, now)
               if msg.kind in (pb.BrokerMsg.SUBSCRIBED, pb.BrokerMsg.UPDATES) else [])
        if self.on_message:
            self.on_message(msg, ups, now)
        with self.cond:
            self.messages += 1
            # Any kind of message may say so, before the values it carries.
            if msg.HasField("missed") and msg.missed > 0:
                self.missed.append((now, msg.missed))
            if msg.kind == pb.BrokerMsg.HEARTBEAT:
                self.heartbeats += 1
            for u in ups:
                self.updates.append(u)
                self.latest[u.tag_id] = u
            if msg.kind == pb.BrokerMsg.ERROR and msg.id not in self.replies and msg.id == 0:
                self.errors.append(msg.error)
            elif msg.kind not in (pb.BrokerMsg.UPDATES, pb.BrokerMsg.HEARTBEAT):
                self.replies[msg.id] = msg
            self.cond.notify_all()

    def send(self, raw=None, **fields):
        data = raw if raw is not None else self.pb.ClientRequest(**fields).SerializeToString()
        with self._send_lock:
            self.sock.send(data)
        self.last_tx = time.monotonic()

    def request(self, timeout=5.0, **fields):
        with self.cond:
            self._id += 1
            rid = self._id
        if "client" not in fields:
            fields["client"] = self.name
        self.send(id=rid, **fields)
        deadline = time.monotonic() + timeout
        with self.cond:
            while rid not in self.replies:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no answer to request %d (%r)" % (rid, fields.get("kind")))
                self.cond.wait(left)
            return self.replies.pop(rid)

    # ------------------------------------------------------------- the API

    def subscribe(self, page, names=(), timeout=5.0):
        """Subscribe a page by names; names already known travel as ids.
        Returns the SUBSCRIBED message."""
        pb = self.pb
        by_name = [n for n in names if n not in self.ids]
        by_id = [self.ids[n] for n in names if n in self.ids]
        rep = self.request(timeout=timeout, kind=pb.ClientRequest.SUBSCRIBE, page=page,
                           names=by_name, tag_ids=by_id)
        if rep.kind == pb.BrokerMsg.ERROR:
            raise RuntimeError("subscribe refused: %s" % rep.error)
        assert rep.kind == pb.BrokerMsg.SUBSCRIBED, rep
        assert len(rep.tag_ids) == len(by_name)
        for n, tid in zip(by_name, rep.tag_ids):
            if tid:
                self.ids[n] = tid
        return rep

    def unsubscribe(self, page, timeout=5.0):
        return self.request(timeout=timeout, kind=self.pb.ClientRequest.UNSUBSCRIBE, page=page)

    def write(self, name, value, timeout=10.0):
        """None if the write went through, else the broker's reason."""
        pb = self.pb
        if name in self.ids:
            rep = self.request(timeout=timeout, kind=pb.ClientRequest.WRITE,
                               tag_ids=[self.ids[name]], value=value)
        else:
            rep = self.request(timeout=timeout, kind=pb.ClientRequest.WRITE, names=[name],
                               value=value)
        if rep.kind == pb.BrokerMsg.ERROR:
            return rep.error
        assert rep.kind == pb.BrokerMsg.WRITTEN, rep
        return rep.error if rep.HasField("error") else None

    def value(self, name):
        with self.cond:
            return self.latest.get(self.ids.get(name))

    def history(self, name, since=0.0):
        tid = self.ids.get(name)
        with self.cond:
            return [u for u in self.updates if u.tag_id == tid and u.t >= since]

    def wait(self, pred, timeout, what="condition"):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                r = pred()
                if r:
                    return r
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))
                self.cond.wait(min(left, 0.05))

    def stop(self):
        self._stop = True
        self.thread.join(2)
        self.sock.close(0)
        self.ctx.term()
