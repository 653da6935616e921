"""System tests of the Redis keys of a whole site: scada-devsim, the resolver,
I/O servers io1 and io2, broker b1 and the alarm service on one Redis.

The key tables of README.md's Redis section are the reference: they are
parsed here (key pattern, type, fields, TTL, writer), so a key, a field or a
TTL the code writes and the README does not describe fails a test, and so
does a documented key no process writes.

- test_keys_match_readme_and_expire_with_their_writer: every key under
  scada:<site>:* is documented, with its type and fields; every key has a
  TTL of at most 3 ping times or is a documented history stream; kill -9 of
  the resolver, io1, b1 and the alarm service, one after the other: the
  victim's keys are gone within its TTL + 1 s while the others stay;
  scadactl status renders the site (processes, devices online, connect
  window, failed channels, active alarms) and then the dead processes as
  absent.
- test_alarm_active_list_comes_back_whole: the alarm service's active list
  deleted behind its back, expired while the service was stopped
  (SIGSTOP), lost with a Redis restart: each time it is written whole again,
  with its TTL.
"""
import json
import os
import re
import signal
import time


import scada_helpers as H
from scada_helpers import wait_until

PING_MS = 500
TTL_MS = max(3 * PING_MS, 1000)  # the longest TTL of any writer at this ping time
ACTIVE_EVERY_PING = 10           # services/alarm/alarm.c: the active list rewritten whole
README = os.path.join(H.ROOT, "README.md")
WRITERS = ("scada-ioserver", "scada-resolver", "scada-broker", "scada-alarm")


# ------------------------------------------------------------ README's tables


class DocKey:
    """One row of a key table in README.md's Redis section."""

    def __init__(self, pattern, type_, fields, ttl, writer, site):
        self.pattern = pattern
        self.type = type_
        self.ttl = ttl
        self.writer = writer
        self.history = ttl.startswith("none")
        # A map (field -> value, "device -> ...") has no fixed field names;
        # otherwise the fields are the `names` outside parentheses.
        if "->" in fields:
            self.fields = None
        else:
            bare = re.sub(r"\([^()]*\)", "", fields)
            self.fields = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", bare))
        rx = ""
        for part in re.split(r"(<[a-z]+>)", pattern):
            if part == "<site>":
                rx += re.escape(site)
            elif part.startswith("<"):
                rx += "(?P<%s>[^:]+)" % part[1:-1]
            else:
                rx += re.escape(part)
        self.regex = re.compile(rx + r"\Z")

    def __repr__(self):
        return self.pattern


def readme_keys(site):
    """The rows of every key table under '### Redis' in README.md."""
    with open(README, encoding="utf-8") as f:
        text = f.read()
    start = text.index("\n### Redis\n")
    section = text[start:text.index("\n## ", start + 1)]
    rows = []
    for line in section.splitlines():
        if not line.startswith("| `scada:"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        assert len(cells) == 5, "README key row without 5 cells: %s" % line
        key, type_, fields, ttl, writer = cells
        rows.append(DocKey(key.strip("`"), type_, fields, ttl, writer, site))
    return rows


def documented(docs, key):
    """(DocKey, its match) of the one row whose pattern the key matches."""
    hits = [(d, d.regex.match(key)) for d in docs]
    hits = [(d, m) for d, m in hits if m]
    assert len(hits) == 1, "key %s matches %d README patterns: %r" % (key, len(hits), hits)
    return hits[0]


def owner(docs, key):
    """Who writes key: ('resolver', None), ('ioserver', 'io1'), ('broker',
    'b1') or ('alarm', None), from the README's writer column."""
    d, m = documented(docs, key)
    kind = d.writer.split(",")[0].strip().replace("scada-", "")  # the first named
    name = m.groupdict().get("io") or m.groupdict().get("b")
    return kind, name


# ------------------------------------------------------------------- the site


def level_tag(name, initial):
    return {"name": name, "address": "hr:0", "type": "uint16",
            "sim": {"kind": "const", "initial": initial},
            "alarms": {"hi": 50, "deadband": 5}}


class Site:
    """d1 (an alarm tag above its limit: an alarm stays active) and d2 served
    by io1 (priority 1) and io2 (priority 2); d3 by io1 only, on the same
    network channel, made to time out so that its socket fails."""

    def __init__(self, env):
        self.env = env
        port = env.free_ports(3)
        self.ios = [env.ioserver_cfg(n, always_scan=False, reconnect_min_ms=300)
                    for n in ("io1", "io2")]
        def both():
            return [{"ioserver": "io1", "priority": 1}, {"ioserver": "io2", "priority": 2}]
        devices = [
            {"name": "d1", "address": "127.0.0.1:%d" % port, "servers": both(), "scan_ms": 200,
             "tags": [level_tag("D1.L", 80)]},
            {"name": "d2", "address": "127.0.0.1:%d" % (port + 1), "servers": both(),
             "scan_ms": 200, "tags": [level_tag("D2.L", 20)]},
            {"name": "d3", "address": "127.0.0.1:%d" % (port + 2), "servers": ["io1"],
             "scan_ms": 200, "tags": [{"name": "D3.T", "address": "hr:1", "type": "uint16",
                                       "always_scan": True}]},
        ]
        ch = {"name": "net", "type": "network", "standard_reply_delay_ms": 150,
              "max_read_timeouts": 2, "devices": devices}
        top = env.pubsub_top()
        self.alarm = env.alarm_top()
        self.site = env.site(self.ios, [ch], ping_time_ms=PING_MS, alarm=self.alarm, **top)
        self.devsim = env.start_devsim(self.site)
        self.procs = {}
        self.procs["resolver"] = env.start_resolver(self.site, top["resolver"]["endpoint"])
        for cfg in self.ios:
            self.procs[cfg["name"]] = env.start_ioserver(self.site, cfg)
        self.procs["b1"] = env.start_broker(self.site, "b1", top["brokers"][0]["endpoint"])
        self.procs["alarm"] = env.start_alarm(self.site, self.alarm["control"])

    def prefix(self):
        return "scada:%s:" % self.env.site_name

    def keys(self):
        return set(self.env.redis.client.scan_iter(match=self.prefix() + "*", count=1000))

    def status(self, *args):
        r = self.env.scadactl(self.site, *args, "status")
        assert r.returncode == 0, r
        return r.stdout


def owned_by(docs, keys, victim):
    """The keys victim ('resolver', 'io1', 'b1', 'alarm') writes."""
    mine = set()
    for k in keys:
        kind, name = owner(docs, k)
        if name == victim or (name is None and kind == victim):
            mine.add(k)
    return mine


def check_key(r, d, key):
    """Type, TTL and fields of one key against its README row; returns a
    list of what is wrong."""
    bad = []
    t = r.type(key)
    if t == "none":
        return bad  # gone meanwhile (a writer rewriting it, or dying)
    if t != d.type:
        bad.append("%s: type %s, README says %s" % (key, t, d.type))
    ttl = r.pttl(key)
    if ttl == -1:
        time.sleep(0.05)  # written this instant, its PEXPIRE next?
        ttl = r.pttl(key)
    if d.history:
        if d.type != "stream":
            bad.append("%s: README gives a %s no TTL; only history streams may have none"
                       % (d.pattern, d.type))
        if ttl != -1:
            bad.append("%s: README says no TTL, it has %d ms" % (key, ttl))
    elif ttl == -1:
        bad.append("%s: no TTL (a state key must expire when its writer dies)" % key)
    elif ttl != -2 and not 0 < ttl <= TTL_MS:
        bad.append("%s: TTL %d ms, more than 3 ping times (%d ms)" % (key, ttl, TTL_MS))
    if d.fields is not None:
        if d.type == "hash":
            got = set(r.hkeys(key))
        else:
            entries = r.xrevrange(key, count=5)
            got = set().union(*(set(e[1]) for e in entries)) if entries else set()
        if got and got != d.fields:
            bad.append("%s: fields differ from README: not documented %s, not written %s"
                       % (key, sorted(got - d.fields), sorted(d.fields - got)))
    return bad


# ---------------------------------------------------------------------- tests


def test_readme_tables_and_sources_agree():
    """The README's tables parse, name known writers, give no state key
    without a TTL; every XADD in the services is capped."""
    docs = readme_keys("demo")
    assert len(docs) >= 11, docs
    for d in docs:
        assert all(w.strip() in WRITERS for w in d.writer.split(",")), (d.pattern, d.writer)
        assert d.type in ("hash", "stream", "string", "set"), (d.pattern, d.type)
        assert not d.history or d.type == "stream", \
            "%s: only history streams may have no TTL" % d.pattern
        if d.type == "stream":
            assert "MAXLEN" in d.ttl, "%s: a stream must say how it is capped" % d.pattern
    for sub in ("ioserver", "resolver", "broker", "alarm"):
        folder = os.path.join(H.ROOT, "services", sub)
        for name in os.listdir(folder):
            if name.endswith(".c"):
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    src = f.read()
                for m in re.finditer(r'"XADD [^"]*"', src):
                    assert "MAXLEN" in m.group(0), "%s/%s: XADD without MAXLEN: %s" % (
                        sub, name, m.group(0))


def test_keys_match_readme_and_expire_with_their_writer(env):
    s = Site(env)
    docs = readme_keys(env.site_name)
    r = env.redis.client
    s.devsim.ok("delay d3 1000")  # d3's socket at io1 fails on timeouts
    # A write, so that the audit stream exists (the value it has already;
    # straight to the I/O server, so that the broker counts no extra client).
    wait_until(lambda: env.scadactl(s.site, "write", "--direct", "D2.L", "20").returncode == 0,
               15, interval=0.5, what="a write to io1")

    # Every documented key is written, including the alarm's active list and
    # the broker's clients (the alarm service is one).
    def all_patterns():
        keys = s.keys()
        missing = [d.pattern for d in docs if not any(d.regex.match(k) for k in keys)]
        return keys if not missing else None
    wait_until(all_patterns, 20, interval=0.2, what="a key for every README pattern")
    assert (r.hget(s.prefix() + "alarm:active", "D1.L.HI") or "").startswith("UNACK_ACTIVE")

    # Every key is documented, of its type, with its fields and a TTL (or a
    # documented history stream). Sampled a few times: keys come and go.
    seen = set()
    for _ in range(4):
        keys = s.keys()
        seen |= keys
        bad = []
        for k in sorted(keys):
            d, _ = documented(docs, k)
            bad += check_key(r, d, k)
        assert not bad, "\n".join(bad)
        time.sleep(PING_MS / 1000.0)
    for d in docs:
        assert any(d.regex.match(k) for k in seen), "README documents %s, nobody wrote it" \
            % d.pattern
    for name in ("io1", "io2"):
        assert r.hget(s.prefix() + "ioserver:%s" % name, "state") == "running"

    # scadactl status: the site at a glance.
    wait_until(lambda: "sockets failed" in s.status(), 15, what="status shows d3's failed socket")
    out = s.status()
    for name in ("io1", "io2"):
        assert re.search(r"ioserver %s +running +pid %d  devices \d+/\d+ online  connect window "
                         r"\d+/10 in flight, \d+ queued" % (name, s.procs[name].pid), out), out
    assert "devices 2/2 online" in out, out  # io2: d1 and d2
    assert re.search(r"(?m)^  channel net +1 sockets failed$", out), out
    assert re.search(r"(?m)^  d3 +(failed|connecting|queued|offline) ", out), out
    assert re.search(r"(?m)^resolver +running +pid %d  I/O servers 2/2 alive"
                     % s.procs["resolver"].pid, out), out
    assert re.search(r"(?m)^broker b1 +running +pid %d  clients 1" % s.procs["b1"].pid, out), out
    assert re.search(r"(?m)^alarm +running +pid %d  active \d+  unacknowledged \d+"
                     % s.procs["alarm"].pid, out), out
    assert re.search(r"(?m)^  D1\.L\.HI +UNACK_ACTIVE p\d+ ", out), out
    js = [json.loads(line) for line in s.status("--json").splitlines()]
    io1 = [j for j in js if j.get("ioserver") == "io1"][0]
    assert io1["connect_window"] == 10 and io1["state"] == "running", io1
    assert [c for c in io1["channels"] if c["channel"] == "net"][0]["sockets_failed"] == 1, io1

    # kill -9, one writer after the other: its keys go within TTL + 1 s, the
    # others' stay (the alarm event stream is history: it stays too).
    for victim in ("resolver", "io1", "b1", "alarm"):
        keys = s.keys()
        mine = {k for k in owned_by(docs, keys, victim) if not documented(docs, k)[0].history}
        assert mine, "no keys of %s before its kill: %s" % (victim, sorted(keys))
        others = keys - mine
        proc = s.procs[victim]
        proc.send(signal.SIGKILL)
        proc.wait(5)
        t0 = time.monotonic()
        wait_until(lambda: not any(r.exists(k) for k in mine), TTL_MS / 1000.0 + 1.0,
                   interval=0.05, what="the keys of %s gone after its kill: %s"
                   % (victim, sorted(k for k in mine if r.exists(k))))
        gone = time.monotonic() - t0
        assert gone <= TTL_MS / 1000.0 + 1.0, (victim, gone)
        stayed = {k for k in others if r.exists(k)}
        assert stayed == others, "%s killed, yet these keys of others went: %s" % (
            victim, sorted(others - stayed))
        time.sleep(0.3)
        assert not any(r.exists(k) for k in mine), "keys of %s came back" % victim
    # What is left: io2's keys, and the histories of alarms and writes.
    left = s.keys()
    history = sorted(k for k in left if documented(docs, k)[0].history)
    assert {owner(docs, k) for k in left if k not in history} == {("ioserver", "io2")}, left
    assert history == [s.prefix() + "alarm:events", s.prefix() + "audit"], history
    assert all(r.pttl(k) == -1 for k in history), history
    out = s.status()
    assert re.search(r"(?m)^ioserver io1 +absent", out), out
    assert re.search(r"(?m)^ioserver io2 +running", out), out
    assert re.search(r"(?m)^resolver +absent", out), out
    assert re.search(r"(?m)^broker b1 +absent", out), out
    assert re.search(r"(?m)^alarm +absent", out), out


def test_alarm_active_list_comes_back_whole(env):
    s = Site(env)
    r = env.redis.client
    key = s.prefix() + "alarm:active"
    wait_until(lambda: (r.hget(key, "D1.L.HI") or "").startswith("UNACK_ACTIVE"), 20,
               what="D1.L.HI on the active list")
    ttl = r.pttl(key)
    assert 0 < ttl <= TTL_MS, ttl

    # Deleted behind the service's back: written whole again within
    # ACTIVE_EVERY_PING pings, with its TTL.
    r.delete(key)
    t0 = time.monotonic()
    wait_until(lambda: r.hget(key, "D1.L.HI"), ACTIVE_EVERY_PING * PING_MS / 1000.0 + 1.5,
               interval=0.1, what="the active list back after DEL")
    assert time.monotonic() - t0 <= ACTIVE_EVERY_PING * PING_MS / 1000.0 + 1.5
    assert 0 < r.pttl(key) <= TTL_MS

    # The service stopped longer than the TTL: its keys expire. It comes back
    # and writes the active list whole at its first ping, not 10 pings later.
    alarm = s.procs["alarm"]
    alarm.send(signal.SIGSTOP)
    try:
        wait_until(lambda: not r.exists(key) and not r.exists(s.prefix() + "alarm"),
                   TTL_MS / 1000.0 + 1.0, what="the alarm keys expire while it is stopped")
    finally:
        alarm.send(signal.SIGCONT)
    t0 = time.monotonic()
    wait_until(lambda: r.hget(key, "D1.L.HI"), 2 * PING_MS / 1000.0 + 0.5, interval=0.05,
               what="the active list back after SIGCONT")
    assert 0 < r.pttl(key) <= TTL_MS

    # Redis restarts empty on the same port: every running process writes its
    # keys again, the active list whole.
    port = env.redis.port
    env.redis.stop()
    env.start_redis(port)
    r = env.redis.client
    docs = readme_keys(env.site_name)

    def back():
        keys = s.keys()
        missing = [d.pattern for d in docs
                   if not d.history and not any(d.regex.match(k) for k in keys)]
        return not missing and r.hget(key, "D1.L.HI")
    wait_until(back, 5, interval=0.1, what="every state key back after a Redis restart")
    for k in s.keys():
        d, _ = documented(docs, k)
        bad = check_key(r, d, k)
        assert not bad, bad
