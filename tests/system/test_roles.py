"""Roles and the audit of writes, on a CURVE site: a certificate's role
gives read or read/write rights per plant area; a read without the right
shows bad-not-allowed, a write without it is refused and the value does not
change; every write attempt, through the broker or straight to the I/O
server, is one line in the audit file and one entry in the Redis stream,
with who, tag, old value, new value, time and result."""
import json
import os
import re
import time


import scada_helpers as H
from scada_helpers import wait_until

PING_MS = 500


ROLES = {
    "roles": {
        "engineer": {"write": ["*"]},
        "operator": {"read": "*", "write": ["pumps"]},
        "viewer": {"read": ["pumps"]},
    },
    "users": {"scadactl": "engineer", "olga": "operator", "vic": "viewer"},
}


class Site:
    """devsim + resolver + io1 + b1; d1 in area pumps, d2 in area tanks."""

    def __init__(self, env, tmp_path):
        self.env = env
        self.keys = str(tmp_path / "keys")
        self.audit_dir = tmp_path / "audit"
        p1 = env.free_ports(2)
        p2 = p1 + 1
        self.io_cfg = env.ioserver_cfg("io1")  # every tag polled: old values known
        tags = lambda d: [{"name": d + ".T", "address": "hr:0", "type": "uint16",  # noqa: E731
                           "sim": {"kind": "ramp", "min": 0, "max": 60000,
                                   "period_ms": 3000}},
                          {"name": d + ".SP", "address": "hr:2", "type": "uint16"}]
        devs = [{"name": "d1", "address": "127.0.0.1:%d" % p1, "servers": ["io1"],
                 "scan_ms": 200, "area": "pumps", "tags": tags("D1")},
                {"name": "d2", "address": "127.0.0.1:%d" % p2, "servers": ["io1"],
                 "scan_ms": 200, "tags": tags("D2")}]
        top = env.pubsub_top()
        self.broker_ep = top["brokers"][0]["endpoint"]
        security = dict(ROLES, keys=self.keys)
        self.site = env.site([self.io_cfg],
                             [{"name": "net", "type": "network", "area": "tanks",
                               "devices": devs}],
                             ping_time_ms=PING_MS, security=security, **top)
        self.top = top
        r = env.scadactl(self.site, "keygen", "olga", "vic", "sam")
        assert r.returncode == 0, r.stderr
        me = (self.keys, "scadactl")
        self.devsim = env.start_devsim(self.site, keys=me)
        self.resolver = env.start_resolver(self.site, top["resolver"]["endpoint"])
        self.io = env.start_ioserver(self.site, self.io_cfg, keys=me)
        self.broker = env.start_broker(self.site, "b1", self.broker_ep)

    def cert(self, user):
        return os.path.join(self.keys, user + ".key")

    def ctl(self, user, *args):
        return self.env.scadactl(self.site, "--cert", self.cert(user), "--timeout", "3000",
                                 *args)

    def value(self, tag):
        r = self.ctl("scadactl", "get", tag)
        m = re.search(r"^%s (\S+) (\S+) " % re.escape(tag), r.stdout, re.M)
        return (m.group(1), m.group(2)) if m else (None, r.stdout + r.stderr)

    def audit(self, process):
        path = self.audit_dir / ("audit-%s.log" % process)
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def pubkey(self, user):
        return H.zcert_keys(self.cert(user))[0]


def test_roles_refuse_and_every_write_is_audited(env, tmp_path):
    s = Site(env, tmp_path)
    wait_until(lambda: s.value("D1.T")[1] == "good" and s.value("D2.T")[1] == "good", 15,
               interval=0.3, what="both devices good through the broker")

    # Reads: olga (read *) sees both areas; vic (pumps) only pumps; sam has
    # a certificate but no role, and the site has no default role.
    r = s.ctl("olga", "get", "D1.T", "D2.T")
    assert r.returncode == 0 and r.stdout.count(" good ") == 2, r.stdout
    r = s.ctl("vic", "get", "D1.T", "D2.T")
    assert re.search(r"^D1\.T \S+ good ", r.stdout, re.M), r.stdout
    assert re.search(r"^D2\.T \S+ bad-not-allowed ", r.stdout, re.M), r.stdout
    r = s.ctl("vic", "get", "--json", "D2.T")
    assert "user vic (role viewer) may not read area tanks" in r.stdout, r.stdout
    r = s.ctl("sam", "get", "D1.T")
    assert re.search(r"^D1\.T \S+ bad-not-allowed ", r.stdout, re.M), r.stdout
    r = s.ctl("sam", "get", "--json", "D1.T")
    assert "user sam (no role) may not read area pumps" in r.stdout, r.stdout
    # Straight from the I/O server (get --direct): the same rights.
    r = s.ctl("vic", "get", "--direct", "D1.T", "D2.T")
    assert re.search(r"^D1\.T \S+ good ", r.stdout, re.M), r.stdout
    assert re.search(r"^D2\.T - bad-not-allowed ", r.stdout, re.M), r.stdout

    # Writes through the broker.
    assert s.ctl("olga", "write", "D1.SP", "7").returncode == 0
    wait_until(lambda: s.value("D1.SP")[0] == "7", 5, what="D1.SP = 7")
    r = s.ctl("olga", "write", "D1.SP", "42")
    assert r.returncode == 0, r.stdout + r.stderr
    r = s.ctl("olga", "write", "D2.SP", "5")
    assert r.returncode == 1 and "user olga (role operator) may not write area tanks" in \
        r.stdout + r.stderr, r.stdout + r.stderr
    r = s.ctl("vic", "write", "D1.SP", "9")
    assert r.returncode == 1 and "may not write area pumps" in r.stdout + r.stderr
    r = s.ctl("sam", "write", "D1.SP", "9")
    assert r.returncode == 1 and "user sam (no role) may not write" in r.stdout + r.stderr
    wait_until(lambda: s.value("D1.SP")[0] == "42", 5, what="D1.SP = 42")
    assert s.value("D2.SP")[0] == "0", "a refused write changed D2.SP"
    assert "refused: user vic (role viewer) may not write area pumps" in \
        open(s.broker.log_path).read()

    # A write that cannot be made (two tags) is an attempt too, from a client
    # of our own (pyzmq, CURVE with olga's certificate).
    import zmq
    d = zmq.Context.instance().socket(zmq.DEALER)
    d.setsockopt(zmq.LINGER, 0)
    H.curve_client(d, (s.keys, "olga"), "b1")
    d.connect(s.broker_ep)
    d.send(H.pb.ClientRequest(kind=H.pb.ClientRequest.WRITE, id=9, names=["D1.SP", "D2.SP"],
                              value=1, client="raw").SerializeToString())
    assert d.poll(3000), "no answer to a malformed write"
    m = H.pb.BrokerMsg.FromString(d.recv())
    assert m.kind == H.pb.BrokerMsg.ERROR and "WRITE needs one tag" in m.error, m
    d.close()

    # The audit file of the broker: one line per attempt, in order.
    recs = s.audit("b1")
    assert [(a["user"], a["tag"], a["new"], a["result"]) for a in recs] == [
        ("olga", "D1.SP", 7, "ok"), ("olga", "D1.SP", 42, "ok"),
        ("olga", "D2.SP", 5, "refused"), ("vic", "D1.SP", 9, "refused"),
        ("sam", "D1.SP", 9, "refused"), ("olga", "D1.SP", 1, "failed")], recs
    assert recs[5]["client"] == "raw" and "WRITE needs one tag" in recs[5]["error"], recs[5]
    ok = recs[1]
    assert ok["old"] == 7 and ok["old_quality"] == "good", ok  # the value before the write
    assert ok["via"] == "b1" and ok["area"] == "pumps" and ok["error"] is None, ok
    assert ok["key"] == s.pubkey("olga"), ok
    assert abs(ok["ts_ms"] - H.now_ms()) < 60000, ok
    assert recs[2]["area"] == "tanks" and "may not write area tanks" in recs[2]["error"]
    assert recs[3]["key"] == s.pubkey("vic")

    # The same in the Redis stream.
    import redis
    red = redis.Redis(port=env.redis.port, decode_responses=True)
    stream = "scada:%s:audit" % env.site_name
    wait_until(lambda: red.xlen(stream) >= 6, 5, what="6 entries in the audit stream")
    entries = [f for _, f in red.xrange(stream)]
    assert [(e["user"], e["tag"], e["new"], e["result"]) for e in entries] == [
        ("olga", "D1.SP", "7", "ok"), ("olga", "D1.SP", "42", "ok"),
        ("olga", "D2.SP", "5", "refused"), ("vic", "D1.SP", "9", "refused"),
        ("sam", "D1.SP", "9", "refused"), ("olga", "D1.SP", "1", "failed")], entries
    assert entries[1]["old"] == "7" and entries[1]["ts_ms"] == str(ok["ts_ms"])

    # Straight to the I/O server (write --direct): the same rights, and the
    # I/O server keeps the record.
    r = s.ctl("olga", "write", "--direct", "D2.SP", "3")
    assert r.returncode == 1 and "may not write area tanks" in r.stdout + r.stderr, \
        r.stdout + r.stderr
    r = s.ctl("olga", "write", "--direct", "D1.SP", "43")
    assert r.returncode == 0, r.stdout + r.stderr
    wait_until(lambda: s.value("D1.SP")[0] == "43", 5, what="D1.SP = 43")
    assert s.value("D2.SP")[0] == "0"
    direct = s.audit("io1")
    assert [(a["via"], a["user"], a["tag"], a["new"], a["result"]) for a in direct] == [
        ("io1", "olga", "D2.SP", 3, "refused"), ("io1", "olga", "D1.SP", 43, "ok")], direct
    assert direct[1]["old"] == 42 and direct[1]["key"] == s.pubkey("olga"), direct
    # The broker's writes are its own record, not the I/O server's twice.
    assert len(s.audit("b1")) == 6
    wait_until(lambda: red.xlen(stream) == 8, 5, what="8 entries in the audit stream")


def test_bad_roles_stop_every_service_at_start(env, tmp_path):
    """A role naming an area no tag has is a typo that would give no right:
    the site file is refused with its line."""
    io = env.ioserver_cfg("io1")
    dev = {"name": "d1", "address": "127.0.0.1:1", "servers": ["io1"], "area": "pumps",
           "tags": [{"name": "D1.SP", "address": "hr:0"}]}
    site = env.site([io], [{"name": "net", "type": "network", "devices": [dev]}],
                    security={"keys": str(tmp_path / "keys"),
                              "roles": {"op": {"write": ["pumsp"]}}})
    for binary, extra in (("scada-broker", ["--name", "b1"]), ("scada-ioserver",
                                                             ["--name", "io1"])):
        import subprocess
        r = subprocess.run([env.bin(binary), "--config", site, *extra], capture_output=True,
                           text=True, timeout=10)
        assert r.returncode == 2, (binary, r.returncode, r.stderr)
        assert re.search(r"site\.yaml:\d+: security\.roles\.op\.write\[0\]: no tag or alarm is in "
                         r"area \"pumsp\"", r.stderr), r.stderr


class AlarmSite:
    """devsim + resolver + io1 + b1 + the alarm service on a CURVE site with
    ROLES: D1.L (area pumps) and D2.L (area tanks), each with a HI alarm at
    50, simulated as `sim` says; certificates for olga and vic."""

    def __init__(self, env, tmp_path, sim):
        self.keys = str(tmp_path / "keys")
        port = env.free_ports(2)
        self.io = env.ioserver_cfg("io1")

        def dev(name, port, area):
            return {"name": name, "address": "127.0.0.1:%d" % port, "servers": ["io1"],
                    "scan_ms": 200, "area": area,
                    "tags": [{"name": name.upper() + ".L", "address": "hr:0", "type": "uint16",
                              "sim": dict(sim), "alarms": {"hi": 50}}]}
        top = env.pubsub_top()
        self.alarm = env.alarm_top()
        self.site = env.site([self.io], [{"name": "net", "type": "network",
                                          "devices": [dev("d1", port, "pumps"),
                                                      dev("d2", port + 1, "tanks")]}],
                             ping_time_ms=PING_MS, alarm=self.alarm,
                             security=dict(ROLES, keys=self.keys), **top)
        assert env.scadactl(self.site, "keygen", "olga", "vic").returncode == 0
        me = (self.keys, "scadactl")
        env.start_devsim(self.site, keys=me)
        env.start_resolver(self.site, top["resolver"]["endpoint"])
        self.iosrv = env.start_ioserver(self.site, self.io, keys=me)
        env.start_broker(self.site, "b1", top["brokers"][0]["endpoint"])
        self.alarmsvc = env.start_alarm(self.site, self.alarm["control"])


def test_alarm_actions_follow_the_roles(env, tmp_path):
    """Alarms: a role lists the alarms of the areas it may read, and may act
    (acknowledge, shelve) only on those of areas it may write; the journal
    records the certificate's name, not the user the request claims. The
    alarm service itself reads every area through the broker."""
    a = AlarmSite(env, tmp_path, {"kind": "const", "initial": 90})
    site, keys = a.site, a.keys

    def ctl(user, *args):
        return env.scadactl(site, "--cert", os.path.join(keys, user + ".key"), *args)

    # The alarm service (no user entry, no default role) sees both areas.
    wait_until(lambda: ctl("scadactl", "alarms").stdout.count("unack-active") == 2, 15,
               interval=0.3, what="D1.L.HI and D2.L.HI active")
    r = ctl("vic", "alarms")
    assert "D1.L.HI" in r.stdout and "D2.L.HI" not in r.stdout, r.stdout  # pumps only
    r = ctl("vic", "ack", "D1.L.HI")
    assert r.returncode == 1 and \
        "user vic (role viewer) may not act on alarms of area pumps" in r.stderr, r
    r = ctl("olga", "ack", "--user", "somebody-else", "D1.L.HI")
    assert r.returncode == 0, r.stderr
    r = ctl("olga", "ack", "D2.L.HI")
    assert r.returncode == 1 and "may not act on alarms of area tanks" in r.stderr, r
    r = ctl("olga", "ack", "--all-area", "tanks")
    assert r.returncode == 1 and "may not act on alarms of area tanks" in r.stderr, r
    r = ctl("scadactl", "--json", "alarms")
    states = {j["alarm"]: j["state"] for j in map(json.loads, r.stdout.splitlines())}
    assert states == {"D1.L.HI": "ack-active", "D2.L.HI": "unack-active"}, states
    r = ctl("scadactl", "--json", "alarms", "--history")
    acks = [j for j in map(json.loads, r.stdout.splitlines()) if j.get("event") == "ack"]
    assert [(j["alarm"], j["user"]) for j in acks] == [("D1.L.HI", "olga")], acks
    r = ctl("vic", "--json", "alarms", "--history")
    assert "D2.L.HI" not in r.stdout and "D1.L.HI" in r.stdout, r.stdout

    # Out of service and back while its condition holds: the answer carries
    # both events (IN_SERVICE, then RAISE again), and the alarm is active.
    r = ctl("vic", "disable", "D1.L.HI")
    assert r.returncode == 1 and "may not act on alarms of area pumps" in r.stderr, r
    r = ctl("olga", "disable", "D1.L.HI")
    assert r.returncode == 0, r.stderr
    r = ctl("scadactl", "--json", "alarms")
    assert [j["out_of_service"] for j in map(json.loads, r.stdout.splitlines())
            if j["alarm"] == "D1.L.HI"] == [True], r.stdout
    r = ctl("olga", "enable", "--comment", "back", "D1.L.HI")
    assert r.returncode == 0, r.stderr
    r = ctl("scadactl", "--json", "alarms")
    states = {j["alarm"]: j["state"] for j in map(json.loads, r.stdout.splitlines())}
    assert states["D1.L.HI"] == "unack-active", states
    r = ctl("scadactl", "--json", "alarms", "--history", "--limit", "2")
    last = [(j["event"], j["user"]) for j in map(json.loads, r.stdout.splitlines())]
    assert last == [("in-service", "olga"), ("raise", "olga")], last


def test_publish_sockets_follow_the_roles(env, tmp_path):
    """The I/O server's value stream and the alarm service's event stream
    carry every area, so they go only to the brokers, the alarm service and
    certificates whose role reads every area there: a viewer that subscribes
    directly fails the handshake and gets nothing (and is counted and
    logged), an operator that reads everything gets the stream, and the
    refused one leaving changes nothing for the others."""
    import zmq
    import redis
    a = AlarmSite(env, tmp_path, {"kind": "ramp", "min": 60, "max": 90, "period_ms": 2000})
    site, keys, io, alarm, iosrv, alarmsvc = a.site, a.keys, a.io, a.alarm, a.iosrv, a.alarmsvc

    ctx = zmq.Context.instance()

    def sub(user, peer, endpoint, topic):
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.LINGER, 0)
        H.curve_client(s, (keys, user), peer)
        s.setsockopt(zmq.SUBSCRIBE, topic)
        s.connect(endpoint)
        return s

    def got(s, ms):
        n = 0
        while s.poll(ms):
            s.recv_multipart()
            n += 1
            ms = 0
        return n

    # The value stream of io1 (areas pumps and tanks).
    olga_v = sub("olga", "io1", io["publish"], b"V")
    vic_v = sub("vic", "io1", io["publish"], b"V")
    assert olga_v.poll(10000), "olga (read *) got no values from io1"
    assert got(olga_v, 500) >= 1
    assert got(vic_v, 3000) == 0, "vic (read pumps) got io1's values of area tanks"
    wait_until(lambda: 'publish socket refused a peer: certificate "vic" (role viewer) '
               'may not read area "tanks"' in open(iosrv.log_path).read(), 5,
               what="io1 logs the refused subscriber")
    assert iosrv.status()["subscribers_refused"] >= 1
    # vic leaving (its unsubscription) does not end olga's stream.
    vic_v.close()
    got(olga_v, 0)
    assert olga_v.poll(3000) and got(olga_v, 500) >= 1, "olga's values stopped when vic left"

    # The alarm events (areas pumps and tanks).
    olga_a = sub("olga", "alarm", alarm["publish"], b"")
    vic_a = sub("vic", "alarm", alarm["publish"], b"")
    red = redis.Redis(port=env.redis.port, decode_responses=True)
    key = "scada:%s:alarm" % env.site_name
    wait_until(lambda: int(red.hget(key, "subscribers_refused") or 0) >= 1, 10,
               what="the alarm service counts vic's refused subscription")
    assert 'alarm publish socket refused a peer: certificate "vic" (role viewer)' in \
        open(alarmsvc.log_path).read()
    time.sleep(0.5)  # olga's subscription is taken before the event
    r = env.scadactl(site, "--cert", os.path.join(keys, "olga.key"), "ack", "D1.L.HI")
    assert r.returncode == 0, r.stderr
    assert olga_a.poll(5000), "olga got no alarm event after the acknowledgement"
    assert got(vic_a, 2000) == 0, "vic got the alarm stream of area tanks"
    for s in (olga_v, olga_a, vic_a):
        s.close()
