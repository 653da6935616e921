"""The Redis host of a site may be a name. It is resolved on glibc's lookup
thread (getaddrinfo_a), never on the event loop, and again before every
reconnect:

- a name that resolves (localhost) is connected to, and the state keys are
  written;
- a name server that does not answer (a network namespace whose
  resolv.conf names an address where port 53 drops everything, so each
  lookup takes the resolver's whole timeout, about 8 s) does not stop the
  I/O server: its device comes online and is polled while the lookup
  hangs, and the failed lookup is said afterwards.
"""
import os
import re
import shutil
import subprocess
import time

import pytest
import yaml

import scada_helpers as H
from scada_helpers import wait_until


def set_redis_host(site, host):
    with open(site) as f:
        doc = yaml.safe_load(f)
    doc["redis"]["host"] = host
    with open(site, "w") as f:
        yaml.safe_dump(doc, f)


def test_redis_host_by_name(env):
    io = env.ioserver_cfg("io1")
    site = env.site([io], [{"name": "net", "type": "network", "devices": []}])
    set_redis_host(site, "localhost")
    srv = env.start_ioserver(site, io)
    key = "scada:%s:ioserver:io1" % env.site_name
    wait_until(lambda: env.redis.client.exists(key), 10, what="%s written" % key)
    assert re.search(r"redis localhost:%d connected" % env.redis.port, srv.log_text()), \
        srv.log_text()


def _ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def silent_dns():
    """A network namespace whose name server never answers."""
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("iptables"):
        pytest.skip("needs root, ip and iptables")
    ns = "scadadns%d" % os.getpid()
    conf = "/etc/netns/%s" % ns
    os.makedirs(conf, exist_ok=True)
    with open(conf + "/resolv.conf", "w") as f:
        f.write("nameserver 192.0.2.1\noptions timeout:2 attempts:2\n")
    try:
        _ip("netns", "add", ns)
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "addr", "add", "192.0.2.1/32", "dev", "lo")
        for proto in ("udp", "tcp"):
            subprocess.run(["ip", "netns", "exec", ns, "iptables", "-A", "INPUT", "-d",
                            "192.0.2.1", "-p", proto, "--dport", "53", "-j", "DROP"],
                           check=True, capture_output=True)
        t0 = time.monotonic()
        r = subprocess.run(["ip", "netns", "exec", ns, "getent", "hosts", "redis.scada-test"],
                           capture_output=True)
        took = time.monotonic() - t0
        assert r.returncode != 0 and took >= 3, "the name server answers (%.1f s)" % took
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(conf, ignore_errors=True)


def test_silent_name_server_does_not_stop_polling(env, silent_dns):
    ns = silent_dns
    port = env.free_ports(1)
    io = env.ioserver_cfg("io1")
    dev = {"name": "d1", "address": "127.0.0.1:%d" % port, "servers": ["io1"], "scan_ms": 200,
           "tags": [{"name": "D1.T", "address": "hr:0", "type": "uint16",
                     "sim": {"kind": "ramp", "min": 0, "max": 1000, "period_ms": 2000}}]}
    site = env.site([io], [{"name": "net", "type": "network", "devices": [dev]}])
    set_redis_host(site, "redis.scada-test")
    wrap = ["ip", "netns", "exec", ns]
    env.own(H.Proc("devsim", wrap + [env.bin("scada-devsim"), "--config", site, "--control",
                                     "tcp://127.0.0.1:%d" % env.free_ports(1)],
                   env.tmp / "devsim.log"))
    time.sleep(0.5)
    t0 = time.monotonic()
    srv = env.start_ioserver(site, io, wrap=wrap, ready=False)
    # Polled while the lookup hangs: online within 4 s, the lookup not over.
    wait_until(lambda: "device d1 online" in srv.log_text(), 4, interval=0.05,
               what="d1 online while the Redis name is being looked up")
    online_after = time.monotonic() - t0
    assert "cannot resolve" not in srv.log_text(), srv.log_text()
    # The lookup ends in a failure, said once, and is retried.
    wait_until(lambda: "cannot resolve redis.scada-test" in srv.log_text(), 20,
               what="the failed lookup logged")
    said_after = time.monotonic() - t0
    print("silent name server: d1 online %.2f s after start, lookup failure said %.2f s "
          "after" % (online_after, said_after))
    assert said_after > online_after
    assert srv.log_text().count("cannot resolve redis.scada-test") == 1
    assert srv.alive()
