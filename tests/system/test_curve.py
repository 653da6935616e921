"""CURVE on every ZeroMQ link: a site with keys (scadactl keygen) works end
to end; a peer with no key, an unknown key or a revoked key is refused with a
log line and nothing it sends arrives; traffic on the wire is not readable;
a plain site says so at every start."""
import os
import re
import subprocess
import time

import pytest

import scada_helpers as H
from scada_helpers import wait_until

PING_MS = 500


class CurveSite:
    """devsim + resolver + io1 + broker b1 + alarm on a CURVE site."""

    def __init__(self, env, tmp_path, security=None):
        self.env = env
        self.keys = str(tmp_path / "keys")
        port = env.free_ports(1)
        io = env.ioserver_cfg("io1", always_scan=False)
        self.io_cfg = io
        dev = {"name": "d1", "address": "127.0.0.1:%d" % port, "servers": ["io1"],
               "scan_ms": 200,
               "tags": [{"name": "D1.T", "address": "hr:0", "type": "uint16",
                         "sim": {"kind": "ramp", "min": 0, "max": 60000, "period_ms": 3000}},
                        {"name": "D1.L", "address": "hr:1", "type": "uint16",
                         "alarms": {"hi": 100000}}]}
        top = env.pubsub_top()
        self.broker_ep = top["brokers"][0]["endpoint"]
        self.alarm = env.alarm_top()
        self.site = env.site([io], [{"name": "net", "type": "network", "devices": [dev]}],
                             ping_time_ms=PING_MS, alarm=self.alarm,
                             security=security or {"keys": self.keys}, **top)
        self.top = top

    def keygen(self, *users):
        r = self.env.scadactl(self.site, "keygen", *users)
        assert r.returncode == 0, r.stderr
        return r

    def start(self):
        me = (self.keys, "scadactl") if os.path.isdir(self.keys) else None
        self.devsim = self.env.start_devsim(self.site, keys=me)
        self.resolver = self.env.start_resolver(self.site, self.top["resolver"]["endpoint"])
        self.io = self.env.start_ioserver(self.site, self.io_cfg, keys=me)
        self.broker = self.env.start_broker(self.site, "b1", self.broker_ep)
        self.alarmsvc = self.env.start_alarm(self.site, self.alarm["control"])

    def ctl(self, *args, cert=None, timeout=20):
        extra = ("--cert", cert) if cert else ()
        return self.env.scadactl(self.site, *extra, *args, timeout=timeout)


def _good(r):
    return r.returncode == 0 and re.search(r"^D1\.T \S+ good ", r.stdout, re.M)


def test_curve_site_works_and_strangers_are_refused(env, tmp_path):
    s = CurveSite(env, tmp_path)
    s.keygen("olga")
    s.start()
    # The whole chain is encrypted and authenticated, and works.
    wait_until(lambda: _good(s.ctl("get", "D1.T")), 15, interval=0.5,
               what="D1.T good through the broker over CURVE")
    r = s.ctl("ping", "io1", "b1", "resolver", "alarm")
    assert r.returncode == 0 and r.stdout.count("alive") == 4, r.stdout
    assert s.devsim.cmd("ping") == "ok pong"  # its control socket, over CURVE
    r = s.ctl("alarms")
    assert r.returncode == 0, r.stderr
    # An operator with her own certificate.
    olga = os.path.join(s.keys, "olga.key")
    assert _good(s.ctl("get", "D1.T", cert=olga))

    # A plain client: no answer, and the broker says it refused someone.
    import zmq
    ctx = zmq.Context.instance()
    d = ctx.socket(zmq.DEALER)
    d.setsockopt(zmq.LINGER, 0)
    d.connect(s.broker_ep)
    req = H.pb.ClientRequest(kind=H.pb.ClientRequest.EXISTS, id=1, names=["D1.T"])
    d.send(req.SerializeToString())
    assert not d.poll(1500), "a plain client got an answer from a CURVE broker"
    d.close()
    # A plain subscriber to the I/O server's values: nothing arrives.
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(s.io_cfg["publish"])
    assert not sub.poll(2000), "a plain SUB received values from a CURVE PUB"
    sub.close()

    # A certificate the site never allowed (made elsewhere).
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    other = H.write_site(elsewhere / "site.yaml", "other", env.redis.port,
                         [{"name": "io1"}], [], security={"keys": "keys"})
    r = env.scadactl(other, "keygen")
    assert r.returncode == 0, r.stderr
    r = s.ctl("--timeout", "1500", "get", "D1.T",
              cert=str(elsewhere / "keys" / "scadactl.key"))
    assert r.returncode == 1 and " good " not in r.stdout, r.stdout + r.stderr
    # The broker says why, and so does the refused client.
    wait_until(lambda: re.search(r"client socket on \S+ refused a peer.*its key is not allowed",
                                 open(s.broker.log_path).read()), 5,
               what="the broker's log line about the refused key")
    assert "the broker refused the CURVE handshake" in r.stderr, r.stderr

    # Revoked: olga is refused from her next connection on; others are not.
    r = s.ctl("revoke", "olga")
    assert r.returncode == 0, r.stderr
    time.sleep(1.1)  # the allow list is read again when the directory changes
    r = s.ctl("--timeout", "1500", "get", "D1.T", cert=olga)
    assert r.returncode == 1 and " good " not in r.stdout, r.stdout + r.stderr
    assert _good(s.ctl("get", "D1.T"))

    # No process logged a secret key.
    secrets = [H.zcert_keys(os.path.join(s.keys, n + ".key"))[1]
               for n in ("io1", "b1", "resolver", "alarm", "scadactl")]
    for p in (s.io, s.broker, s.resolver, s.alarmsvc, s.devsim):
        log = open(p.log_path, errors="replace").read()
        assert not any(k in log for k in secrets), p.name


class Relay:
    """A TCP relay that keeps every byte it forwards: what a wiretap sees."""

    def __init__(self, port, target_port):
        import socket
        import threading
        self.seen = bytearray()
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", port))
        self.lsock.listen(8)
        self.target = target_port
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import socket
        import threading
        while not self.stop:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, a, b):
        while True:
            try:
                d = a.recv(65536)
            except OSError:
                d = b""
            if not d:
                for x in (a, b):
                    try:
                        x.close()
                    except OSError:
                        pass
                return
            self.seen += d
            try:
                b.sendall(d)
            except OSError:
                return

    def close(self):
        self.stop = True
        self.lsock.close()


@pytest.mark.parametrize("plain", [False, True])
def test_traffic_on_the_wire_is_not_readable(env, tmp_path, plain):
    """Through a wiretap between scadactl and the broker: over CURVE the tag
    name and the reply never show in clear; on a plain site they do (which
    shows the tap sees the traffic)."""
    s = CurveSite(env, tmp_path, security={"plain": True} if plain else None)
    if not plain:
        s.keygen()
    s.start()
    wait_until(lambda: _good(s.ctl("get", "D1.T")), 15, interval=0.5, what="D1.T good")
    relay = Relay(env.free_ports(1), int(s.broker_ep.rsplit(":", 1)[1]))
    try:
        ep = "tcp://127.0.0.1:%d" % relay.lsock.getsockname()[1]
        r = s.ctl("--endpoint", ep, "--broker", "b1", "get", "D1.T")
        assert _good(r), r.stdout + r.stderr
    finally:
        relay.close()
    assert len(relay.seen) > 200, len(relay.seen)
    if plain:
        assert b"D1.T" in bytes(relay.seen)
    else:
        assert b"D1.T" not in bytes(relay.seen), "the tag name crossed the wire in clear"


def test_missing_keys_stop_a_service_with_a_clear_message(env, tmp_path):
    s = CurveSite(env, tmp_path)  # no keygen
    r = subprocess.run([env.bin("scada-resolver"), "--config", s.site],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 2, r
    assert "no key directory" in r.stderr and "keygen" in r.stderr, r.stderr
    r = s.ctl("get", "D1.T")
    assert r.returncode == 2 and "keygen" in r.stderr, r.stderr


def test_plain_site_warns_at_every_start(env, tmp_path):
    s = CurveSite(env, tmp_path, security={"plain": True})
    s.start()
    for p in (s.io, s.broker, s.resolver, s.alarmsvc, s.devsim):
        log = open(p.log_path, errors="replace").read()
        assert "PLAIN LINKS" in log and "neither encrypted nor authenticated" in log, p.name
    assert _good(s.ctl("get", "D1.T")) or wait_until(lambda: _good(s.ctl("get", "D1.T")), 15,
                                                     interval=0.5, what="D1.T good")
