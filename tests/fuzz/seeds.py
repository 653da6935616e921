#!/usr/bin/env python3
"""Write the seed corpora of the fuzz targets: tests/fuzz/corpus/<target>/seed_*.

    /usr/bin/python3 tests/fuzz/seeds.py            # every corpus
    /usr/bin/python3 tests/fuzz/seeds.py site rmsg  # only these

Only files named seed_* are written (and stale seed_* removed); inputs kept
from fuzzing runs (regress_*) are left alone. The protobuf messages come from
Python code that `protoc` generates from proto/scada.proto (as the system
tests load it), not from our C code. Protobuf targets read an input as
records separated by SEP; a record is one selector byte and its payload
(tests/fuzz/fuzz_util.h; each target says what its selectors mean).
"""
import os
import struct
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "system"))

SEP = b"\xa5FZ\x5a"
pb = None


def write_corpus(name, seeds):
    """seeds: {name: bytes}. Replaces the corpus's seed_* files."""
    d = os.path.join(HERE, "corpus", name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if f.startswith("seed_") and f[5:] not in seeds:
            os.unlink(os.path.join(d, f))
    for k, v in sorted(seeds.items()):
        with open(os.path.join(d, "seed_" + k), "wb") as f:
            f.write(v)
    print("%s: %d seeds, %d bytes" % (name, len(seeds), sum(len(v) for v in seeds.values())))


def records(*recs):
    """recs: (selector, message or bytes) pairs -> one input."""
    out = []
    for sel, msg in recs:
        body = msg if isinstance(msg, (bytes, bytearray)) else msg.SerializeToString()
        out.append(bytes([sel]) + body)
    return SEP.join(out)


# ---------------------------------------------------------------- site files

SITE_MIN = """site: t
ioservers:
  - name: io1
channels:
  - name: ch1
    type: network
    devices:
      - name: d1
        address: 127.0.0.1:502
        servers: [io1]
        tags:
          - {name: T1, address: "hr:0"}
"""

# test_site.c's file with every key
SITE_FULL = """# A site with every key
site: plant7
redis: {host: redis.local, port: 6380}
ping_time_ms: 250
resolve_retry_backoff_ms: 750
devsim: {control: "tcp://127.0.0.1:6590", start: [silent d1, "refuse d2"]}
resolver: {endpoint: "tcp://10.0.0.9:6500"}
brokers: [{name: b1, resolve_on_startup: yes, update_interval_ms: 50}, {name: b2}]
alarm:
ioservers:
  - name: io1
    connect_window: 4
    connect_timeout_ms: 2000
    connect_timeout_min_ms: 100
    reconnect_min_ms: 500
    reconnect_max_ms: 30000
    recent_ms: 120000
    integrity_ms: 15000
    publish: tcp://10.0.0.1:7000
    control: tcp://10.0.0.1:7001
  - name: io2
channels:
  - name: net1
    type: network
    standard_reply_delay_ms: 150
    baud: 0
    max_read_timeouts: 5
    max_write_timeouts: 2
    max_gap: 8
    iolog: yes
    devices:
      - name: plc1
        address: 127.0.0.1:15020
        unit: 7
        servers: [{ioserver: io1, priority: 1}, {ioserver: io2, priority: 2}]
        tags:
          - {name: PLC1.LEVEL, address: "hr:0", type: float32, scan_ms: 500,
             deadband: 0.5, always_scan: true}
          - {name: PLC1.RUN, address: "co:3"}
          - {name: PLC1.FLOW, address: "ir:10", type: int32, word_order: little,
             raw: [4000, 20000], eng: [0, 100]}
          - name: PLC1.ALARM
            address: di:65535
            sim: toggle
          - {name: PLC1.SP, address: "HR:2", type: int16, scale: 0.1, offset: -5,
             writable: false,
             sim: {kind: ramp, min: -10, max: 10, period_ms: 2000, initial: 3}}
      - name: plc2
        address: "[::1]:502"
        word_order: little
        tags:
          - {name: PLC2.A, address: "hr:65534", type: uint32}
          - {name: PLC2.B, address: "hr:0", type: float32, word_order: big,
             scan_ms: 100, sim: {kind: sine}}
        scan_ms: 250
        servers: [io2, io1]
  - name: gw
    devices:
      - {name: rtu1, unit: 3, servers: [io2]}
      - {name: rtu2, address: 4, servers: [{ioserver: io1}, io2]}
    type: tcp
    address: gw.local:502
  - name: bus
    type: serial
    serial_port: /dev/ttyUSB0
    baud: 9600
    parity: e
    data_bits: 7
    stop_bits: 2
    devices: []
  - name: inbound
    type: listen
    address: 0.0.0.0:1502
    devices:
      - name: out1
        servers: [io1]
        tags: [{name: OUT1.V, address: "ir:0", sim: noise}]
"""

SITE_ALARMS = """site: al
brokers: [{name: b1, endpoint: "tcp://127.0.0.1:5700"}]
alarm:
  publish: tcp://127.0.0.1:5800
  control: tcp://127.0.0.1:5801
  journal: alarms.journal
  sync: none
  journal_max_kb: 64
  comm_priority: 2
  comm_area: comm
  comm_delay_ms: 500
  device_alarms: false
  broker: b1
ioservers: [{name: io1}]
channels:
  - name: ch1
    type: network
    devices:
      - name: d1
        address: 127.0.0.1:502
        servers: [io1]
        tags:
          - {name: D1.LEVEL, address: "hr:0", type: float32,
             alarms: {hihi: {limit: 95, priority: 1, message: "very high"}, hi: 80,
                      lo: 20, lolo: {limit: 5}, deadband: 2, on_delay_ms: 3000,
                      priority: 2, area: tanks, comm: false}}
          - {name: D1.DOOR, address: "di:0",
             alarms: {state: {value: 1, message: "door open", priority: 1}, area: east}}
"""

SITE_ENV = """site: ${FUZZ_SITE:-envsite}
redis: {host: "${FUZZ_HOST}", port: "${FUZZ_PORT}"}
resolver: {endpoint: "tcp://${FUZZ_HOST}:$${FUZZ_PORT}"}
ioservers:
  - name: io1
    publish: tcp://${FUZZ_HOST:-127.0.0.1}:${FUZZ_PORT}
    control: tcp://${FUZZ_EMPTY:-localhost}:5601
    iolog_dir: ${NOT_SET_ANYWHERE:-log}/$$HOME
channels:
  - name: ch1
    type: network
    devices:
      - {name: d1, address: "${FUZZ_HOST}:502", servers: [io1],
         tags: [{name: "T.${FUZZ_HOST}", address: "hr:${FUZZ_PORT}"}]}
"""

# The first PLC of the demo site, cut where a reader would stop reading.
def demo_pieces():
    with open(os.path.join(ROOT, "deploy", "sites", "demo.yaml")) as f:
        demo = f.read()
    head = demo[:demo.index("      - name: plc02")]
    tail = demo[demo.index("# scada-devsim, the simulated plant"):]
    return {"demo_head": head.encode(), "demo_head_devsim": (head + tail).encode()}


def site_seeds():
    seeds = {"min": SITE_MIN.encode(), "full": SITE_FULL.encode(),
             "alarms": SITE_ALARMS.encode(), "env": SITE_ENV.encode()}
    seeds.update(demo_pieces())
    seeds["empty"] = b""
    seeds["comment_only"] = b"# nothing here\n\n"
    seeds["anchor_alias"] = (SITE_MIN.replace("  - name: io1\n", "  - &io {name: io1}\n")
                             + "brokers: [*io]\n").encode()
    seeds["alias_value"] = b"site: &s t\nioservers: [{name: *s}]\nchannels: []\n"
    seeds["merge_key"] = b"site: t\nx: &d {a: 1}\nioservers: [{<<: *d, name: io1}]\nchannels: []\n"
    seeds["deep_nesting"] = b"site: " + b"[" * 200 + b"]" * 200 + b"\n"
    seeds["deep_mapping"] = b"site: t\nchannels:\n" + b"".join(
        b"  " * i + b"- a:\n" for i in range(1, 60)) + b"\n"
    numbers = {
        "big_uint": "standard_reply_delay_ms: 99999999999999999999999",
        "negative": "baud: -1",
        "hex": "max_gap: 0x10",
        "exponent": "max_read_timeouts: 1e9",
        "zero_timeouts": "max_write_timeouts: 0",
    }
    for k, v in numbers.items():
        seeds["number_" + k] = SITE_MIN.replace(
            "    type: network\n", "    type: network\n    %s\n" % v).encode()
    tags = {
        "last_address": '"hr:65535", type: float32',
        "huge_scale": '"hr:0", scale: 1e308, offset: -1e308',
        "nan_deadband": '"hr:0", deadband: .nan',
        "inf_scale": '"hr:0", scale: -.inf',
        "raw_eng": '"hr:0", raw: [0, 1e-320], eng: [0, 1e308]',
        "address_big": '"hr:65536"',
        "address_spaces": '" hr : 1 "',
    }
    for k, v in tags.items():
        seeds["tag_" + k] = SITE_MIN.replace('"hr:0"}', v + "}").encode()
    seeds["tabs"] = SITE_MIN.replace("    type: network", "\ttype: network").encode()
    seeds["two_documents"] = (SITE_MIN + "---\n" + SITE_MIN).encode()
    seeds["flow_env_unquoted"] = b"site: t\nredis: {host: ${FUZZ_HOST}}\nioservers: []\nchannels: []\n"
    seeds["env_bad_refs"] = (b"site: ${}\nredis: {host: \"${1A}\", port: \"${X:-${Y}}\"}\n"
                             b"ioservers: [{name: \"${UNCLOSED\"}]\n")
    seeds["binary"] = bytes(range(256)) * 2
    seeds["utf16_bom"] = "\ufeffsite: t\nioservers: []\nchannels: []\n".encode("utf-16-le")
    seeds["utf8_bom_nel"] = "\ufeffsite: t\u0085ioservers: []\u2028channels: []\n".encode()
    seeds["bad_utf8"] = b"site: t\xff\xfe\nioservers: []\n"
    seeds["nul_byte"] = b"site: t\x00\nioservers: []\nchannels: []\n"
    seeds["tags_and_types"] = b"""site: t
ioservers: [{name: io1}, {name: io2}]
brokers: [{name: b1}, {name: b1}]
channels:
  - {name: c, type: tcp, address: "gw:502", devices: [
      {name: d, unit: 0, servers: [io1, io1], tags: [
        {name: A, address: "co:0", type: int32},
        {name: A, address: "xx:1"},
        {name: B, address: "hr:1", type: flaot32, word_order: middle},
        {name: C, address: "hr:2", raw: [1, 1], eng: [0, 1]},
        {name: D, address: "ir:3", writable: true, sim: {kind: sine, period_ms: 0}}]}]}
  - {name: s, type: serial, serial_port: "", parity: x, data_bits: 9, stop_bits: 3, devices: []}
"""
    return seeds


def site_dict():
    """A libFuzzer dictionary: the keys and words of common/src/site.c."""
    import re
    with open(os.path.join(ROOT, "common", "src", "site.c")) as f:
        src = f.read()
    words = set(re.findall(r'(?:\.name = |_KEY\()"([a-z_0-9]+)"', src))
    for m in re.findall(r'_names\[\] = \{([^}]*)\}', src):
        words.update(re.findall(r'"([a-z_0-9]+)"', m))
    tokens = ["%s: " % w for w in sorted(words)]
    tokens += ["hr:", "co:", "di:", "ir:", "${", "${FUZZ_HOST}", "${FUZZ_PORT:-", ":-", "}", "$$",
               "- ", "{", "}", "[", "]", ", ", "&a ", "*a", "<<: ", "---", "...", "!!str ", "|",
               ">", "'", "\"", "#", "\t", "\r\n", "tcp://", "127.0.0.1:", "4294967295",
               "65535", "1e308", ".nan", ".inf", "true", "no", "~", "null"]
    out = ["# written by tests/fuzz/seeds.py from common/src/site.c"]
    for t in tokens:
        out.append('"%s"' % "".join(c if 32 <= ord(c) < 127 and c not in '\\"' else "\\x%02x" % ord(c)
                                    for c in t))
    path = os.path.join(HERE, "dict", "site.dict")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


# ---------------------------------------------------------------- resolver
# fuzz_rmsg: selector bits 0-1 the peer (DEALER peer0..peer3), bit 6 an empty
# frame first; bit 7 time passes (payload byte: x 100 ms; bit 0: settle now).

def tick(n=1, settle=False):
    return (0x80 | (1 if settle else 0), bytes([n]))


def rmsg(kind, **kw):
    m = pb.ResolverMsg(kind=getattr(pb.ResolverMsg, kind))
    for k, v in kw.items():
        if k == "offers":
            for dev, prio, online in v:
                o = m.offers.add(device=dev, online=online)
                if prio is not None:
                    o.priority = prio
        elif k in ("names",):
            getattr(m, k).extend(v)
        elif k == "tags":
            for name, found in v:
                m.tags.add(name=name, found=found)
        elif k == "best":
            for dev, io in v:
                b = m.best.add(device=dev)
                if io:
                    b.ioserver = io
        else:
            setattr(m, k, v)
    return m


def rmsg_seeds():
    R = rmsg
    reg1 = R("REGISTER", name="io1", incarnation=11, publish="tcp://127.0.0.1:5600",
             control="tcp://127.0.0.1:5601", offers=[("d1", 1, True), ("d2", None, True)])
    reg2 = R("REGISTER", name="io2", incarnation=22, publish="tcp://127.0.0.1:5610",
             control="tcp://127.0.0.1:5611",
             offers=[("d1", 2, True), ("d2", 1, False), ("d3", 1, True), ("nope", 1, True)])
    hello = R("HELLO", name="b1", incarnation=7)
    resolve = R("RESOLVE", id=5, name="b1", names=["D1.A", "D2.A", "NOPE", "D3.A", "", "D1.B"])
    seeds = {}
    seeds["session"] = records(
        (0, reg1), (1, reg2), (2, hello), tick(2, settle=True), (2, resolve),
        (0, R("HEARTBEAT", name="io1", incarnation=11)),
        (0, R("UNIT_STATE", name="io1", incarnation=11, offers=[("d1", None, False)])),
        (2, R("HEARTBEAT", name="b1", incarnation=7)), tick(20),
        (1, R("HEARTBEAT", name="io2", incarnation=22)), (2, R("HEARTBEAT", name="b1", incarnation=7)),
        tick(40), (2, R("HEARTBEAT", name="b1", incarnation=7)))
    seeds["broker_moves"] = records(
        (2, hello), (3, R("HEARTBEAT", name="b1", incarnation=7)),
        (3, R("HEARTBEAT", name="b1", incarnation=8)), (3, R("HELLO", name="b1", incarnation=8)),
        (0, reg1), tick(16, settle=True), (0, R("UNIT_STATE", name="io1", incarnation=11,
                                                offers=[("d1", 1, False), ("d2", 3, True)])))
    seeds["reregister"] = records(
        (0, R("HEARTBEAT", name="io1", incarnation=1)),
        (0, R("UNIT_STATE", name="io1", incarnation=1, offers=[("d1", 1, True)])),
        (0, reg1), (0, R("HEARTBEAT", name="io1", incarnation=12)),
        (1, R("REGISTER", name="io9", incarnation=1, publish="p", control="c")))
    for kind in ("REGISTER", "HEARTBEAT", "UNIT_STATE", "REREGISTER", "HELLO", "RESOLVE",
                 "RESOLVED", "BEST_OFFERS", "ERROR"):
        seeds["kind_" + kind.lower()] = records((0, R(kind, id=1, name="io1", incarnation=1,
                                                      publish="p", control="c",
                                                      offers=[("d1", 1, True)], names=["D1.A"],
                                                      tags=[("D1.A", True)], best=[("d1", "io1")],
                                                      full=True, error="oops")))
    seeds["refused"] = records(
        (0, b""), (1, b"\xff\xff\xff garbage"), (2, b"\x08\x2a"),
        (0, R("REGISTER", name="io1", incarnation=1)),
        (0, R("REGISTER", name="io1", incarnation=1, publish="p", control="c",
              offers=[("", 1, True)])),
        (1, R("HELLO", name="x" * 300, incarnation=1)), (2, R("HELLO", name="io2", incarnation=1)),
        (3, R("RESOLVE", names=["D1.A"])), (0x40, hello))
    return seeds


# ---------------------------------------------------------------- I/O server
# fuzz_ioreq: selector bit 7 time passes (payload byte x 100 ms); bit 6 a
# ResolverMsg to the I/O server; otherwise an IoRequest from DEALER bits 0-1
# (bit 5: an empty frame first).

def ioreq(kind, id, **kw):
    m = pb.IoRequest(id=id, kind=getattr(pb.IoRequest, kind))
    for k, v in kw.items():
        if k == "tags":
            m.tags.extend(v)
        else:
            setattr(m, k, v)
    return m


def ioreq_seeds():
    Q = ioreq
    seeds = {
        "write": records((0, Q("WRITE", 1, tag="D1.SP", value=12.5)),
                         (1, Q("WRITE", 2, tag="D1.RO", value=1)),
                         (2, Q("WRITE", 3, tag="NOPE", value=1)),
                         (3, Q("WRITE", 4, tag="D9.A", value=1)),
                         (0, Q("WRITE", 5, tag="D1.RUN", value=2)),
                         (0, Q("WRITE", 6, tag="D1.SP")), (0, Q("WRITE", 7, value=3))),
        "status_state": records((0, Q("STATUS", 1)), (1, Q("STATE", 2)), (0x20, Q("STATUS", 3))),
        "read": records((0, Q("READ", 9, tags=["D1.LEVEL", "NOPE", "D9.A", "U2.A", "D1.SW", ""])),
                        (1, Q("READ", 10))),
        "iolog": records((0, Q("IOLOG", 1, channel="gw", enable=False)),
                         (0, Q("IOLOG", 2, channel="plant", enable=True)),
                         (0, Q("IOLOG", 3, channel="nope", enable=True)),
                         (0, Q("IOLOG", 4, channel="gw"))),
        "subscribe": records(
            (0, Q("SUBSCRIBE", 1, client="b1", tags=["D1.LEVEL", "D1.RUN", "U1.A", "NOPE", "D9.A"])),
            (1, Q("SUBSCRIBE", 2, client="b2", tags=["D1.LEVEL", "D1.SW"], replace=True)),
            tick(3), (0, Q("KEEP", 3, client="b1", count=3)), (1, Q("KEEP", 4, client="b2", count=9)),
            tick(8), (0, Q("UNSUBSCRIBE", 5, client="b1", tags=["D1.RUN", "NOPE"])),
            (0, Q("SUBSCRIBE", 6, client="b1", tags=["U2.A"], replace=True)),
            (2, Q("UNSUBSCRIBE", 7, client="b9", tags=["U2.A"])), tick(11),
            (0, Q("KEEP", 8, client="b1", count=1)), tick(100), tick(100),
            (0, Q("KEEP", 9, client="b1", count=1))),
        "refused": records(
            (0, b""), (1, b"\xff\xff\xff\xff garbage"), (2, b"\x08\x05\x10\x63"),
            (3, Q("SUBSCRIBE", 1, tags=["D1.LEVEL"])), (0, Q("KEEP", 2, client="")),
            (0, Q("UNSUBSCRIBE", 3)), (0x20, Q("READ", 4, tags=["D1.LEVEL"]))),
        "resolver": records(
            (0x40, rmsg("REREGISTER", name="res", incarnation=1)),
            (0x40, rmsg("ERROR", error="who are you")), (0x40, b"\x08"),
            (0x40, rmsg("BEST_OFFERS", best=[("d1", "io1")])), tick(10)),
    }
    for kind in ("WRITE", "STATUS", "READ", "IOLOG", "SUBSCRIBE", "UNSUBSCRIBE", "STATE", "KEEP"):
        seeds["kind_" + kind.lower()] = records((0, Q(kind, 42, tag="D1.SP", value=1, tags=["D1.SP"],
                                                     channel="gw", enable=True, client="b1",
                                                     count=0, replace=True)))
    return seeds


# ---------------------------------------------------------------- broker
# fuzz_clientreq: selector bit 7 time passes (payload byte x 10 ms; bit 0 ping,
# bit 1 client check); bits 5-6: 0 ClientRequest from client bits 0-1 (bit 4:
# empty frame first), 1 ResolverMsg, 2 ValueBatch from io1/io2 (bit 0; bit 4:
# topic "X"), 3 IoReply from io1/io2 (bit 0).

def creq(kind, **kw):
    m = pb.ClientRequest(kind=getattr(pb.ClientRequest, kind))
    for k, v in kw.items():
        if k in ("names", "tag_ids"):
            getattr(m, k).extend(v)
        else:
            setattr(m, k, v)
    return m


def vbatch(io, *values, integrity=False):
    b = pb.ValueBatch(ioserver=io, integrity=integrity)
    for tag, tag_id, number, quality, reason in values:
        v = b.values.add(tag=tag, quality=getattr(pb, quality), source_ts_ms=1700000000000 + tag_id,
                         seq=tag_id)
        if tag_id:
            v.tag_id = tag_id
        if number is not None:
            v.number = number
        if reason:
            v.reason = reason
    return b


def ioreply(id, status="OK", error=None, count=None, values=()):
    r = pb.IoReply(id=id, status=getattr(pb.IoReply, status))
    if error:
        r.error = error
    if count is not None:
        r.count = count
    for tag, tag_id, number, quality in values:
        v = r.values.add(tag=tag, tag_id=tag_id, quality=getattr(pb, quality),
                         source_ts_ms=1700000000000, seq=1)
        if number is not None:
            v.number = number
    return r


def resolved(id, *tags):
    m = pb.ResolverMsg(kind=pb.ResolverMsg.RESOLVED, id=id)
    for name, tag_id, dev, writable in tags:
        t = m.tags.add(name=name, found=tag_id is not None)
        if tag_id is not None:
            t.tag_id, t.device, t.writable = tag_id, dev, writable
    return m


def best(full, *offers):
    m = pb.ResolverMsg(kind=pb.ResolverMsg.BEST_OFFERS, full=full)
    for dev, io, reason, prev in offers:
        b = m.best.add(device=dev, reason=reason, previous_usable=prev)
        if io:
            b.ioserver = io
    return m


def bticks(n, ping=False, check=False):
    return (0x80 | (1 if ping else 0) | (2 if check else 0), bytes([n]))


def clientreq_seeds():
    C, RES, VB, IOR = 0x00, 0x20, 0x40, 0x60
    page = records(
        (C, creq("SUBSCRIBE", id=1, page=1, names=["T1", "T2", "NOPE"], client="ui")),
        (RES, resolved(1, ("T1", 1, "d1", True), ("T2", 2, "d1", True), ("NOPE", None, None, 0))),
        (RES, best(True, ("d1", "io1", "io1 registered", False), ("d2", "io2", "", False),
                   ("d3", None, "no offer", False))),
        bticks(2),
        (VB, vbatch("io1", ("T1", 1, 3.5, "GOOD", None), ("T2", 2, 1, "GOOD", None))),
        bticks(12), (IOR, ioreply(2, count=2)),
        (VB, vbatch("io1", ("T1", 1, 4.25, "BAD_DEVICE", "exception 2"),
                    ("", 2, None, "BAD_NO_COMM", "lost"))),
        bticks(6),
        (C, creq("WRITE", id=2, names=["T1"], value=7)), bticks(1),
        (IOR, ioreply(3)), (IOR, ioreply(4, status="ERROR", error="device offline")),
        (C, creq("SUBSCRIBE", id=3, page=2, tag_ids=[1, 2, 99])), bticks(12),
        (C, creq("WRITE", id=4, tag_ids=[2], value=1)), bticks(60),
        (0x01, creq("EXISTS", id=5, names=["T1", "NOPE", "U1"])),
        (0x02, creq("RESOLVE", id=6, names=["T1", "U1"])),
        (RES, resolved(3, ("U1", 4, "d2", False))),
        (RES, best(False, ("d1", "io2", "io1 stopped", True))),
        (VB | 1, vbatch("io2", ("T1", 1, 5, "GOOD", None), ("T2", 2, 0, "UNCERTAIN", "?"))),
        bticks(10, ping=True, check=True),
        (IOR, ioreply(9, status="ERROR", error="resync")), bticks(110, ping=True),
        (C, creq("UNSUBSCRIBE", id=7, page=1)), (C, creq("HEARTBEAT")),
        bticks(250, ping=True, check=True), bticks(250, ping=True, check=True))
    seeds = {"page": page}
    seeds["refused"] = records(
        (C, b""), (0x01, b"\xff\xff garbage"), (0x02, b"\x08\x09"),
        (C, creq("SUBSCRIBE", id=1, names=["T1"])), (C, creq("UNSUBSCRIBE", id=2)),
        (C, creq("WRITE", id=3, names=["T1", "T2"], value=1)),
        (C, creq("WRITE", id=4, names=["T1"], value=float("nan"))),
        (C, creq("WRITE", id=5, tag_ids=[1])), (0x10, creq("EXISTS", id=6, names=["T1"])))
    seeds["resolver"] = records(
        (RES, pb.ResolverMsg(kind=pb.ResolverMsg.REREGISTER)),
        (RES, pb.ResolverMsg(kind=pb.ResolverMsg.HEARTBEAT)),
        (RES, pb.ResolverMsg(kind=pb.ResolverMsg.ERROR, error="no")),
        (RES, resolved(77, ("T1", 1, "d1", True))),
        (RES, resolved(1, ("T1", 0, "d1", True), ("T9", 99, "d1", True))),
        (RES, best(False, ("d1", "io9", "elsewhere", False))),
        (RES, pb.ResolverMsg(kind=pb.ResolverMsg.RESOLVE, id=1)),
        (RES, b"\x08\x07\x52\x00"), bticks(50, ping=True))
    ios = pb.ResolverMsg(kind=pb.ResolverMsg.BEST_OFFERS)
    ios.best.add(device="d1", ioserver="io3", publish="tcp://10.9.9.9:5600",
                 control="tcp://10.9.9.9:5601")
    seeds["resolver_endpoints"] = records((RES, ios), bticks(1))
    seeds["ios_garbage"] = records(
        (VB | 0x10, vbatch("io1", ("T1", 1, 1, "GOOD", None))), (VB, b"\x0a"), (IOR | 1, b"\xff"),
        (IOR, ioreply(1, values=[("T1", 1, 2.0, "GOOD"), ("ZZ", 77, None, "BAD_NOT_FOUND")])))
    for kind in ("SUBSCRIBE", "UNSUBSCRIBE", "WRITE", "HEARTBEAT", "EXISTS", "RESOLVE"):
        seeds["kind_" + kind.lower()] = records((C, creq(kind, id=9, page=3, names=["T1"],
                                                        value=2, client="x")))
    return seeds


# ---------------------------------------------------------------- brokermsg

def bmsg(kind, **kw):
    updates = kw.pop("updates", ())
    m = pb.BrokerMsg(kind=getattr(pb.BrokerMsg, kind), **kw)
    for u in updates:
        m.updates.add(**u)
    return m


def brokermsg_seeds():
    API, TICK = 0x40, 0x80
    sub = lambda page, pick: (API | 0, bytes([page, pick]))  # noqa: E731
    seeds = {}
    seeds["session"] = records(
        sub(1, 0b11),                                       # id 1: T1, T2
        (0, bmsg("SUBSCRIBED", id=1, page=1, tag_ids=[1, 2], base_ts=1700000000000,
                 updates=[{"tag_id": 1, "number": 3.5, "ts": 5},
                          {"tag_id": 2, "quality": pb.BAD_NO_COMM, "reason": "lost"}])),
        (0, bmsg("UPDATES", base_ts=1700000001000, missed=5,
                 updates=[{"tag_id": 1, "integer": 7},
                          {"tag_id": 2, "quality": pb.BAD_NO_COMM, "same_reason": True},
                          {"tag_id": 2, "quality": pb.BAD_NOT_ALLOWED,
                           "reason": "user v (role viewer) may not read area a"}])),
        (API | 2, bytes([0, 9])),                           # id 2: write T1 = 9
        (0, bmsg("WRITTEN", id=2)),
        (API | 2, bytes([1, 1])),                           # id 3: write T2 = 1
        (0, bmsg("ERROR", id=3, error="user v (role viewer) may not write area a")),
        (0, bmsg("HEARTBEAT")), (TICK, bytes([100])),
        sub(2, 0b1100),                                     # id 4: U1, V1
        (0, bmsg("ERROR", id=4, page=2, error="a page holds at most 10000 tags")),
        (API | 1, bytes([1])), (0, bmsg("UNSUBSCRIBED", id=5, page=1)),
        (TICK, bytes([250])), (TICK, bytes([250])))
    seeds["garbage"] = records((0, b"\x08\x63\x10"), (0, b"\xff" * 9),
                               (0, bmsg("UPDATES", updates=[{"tag_id": 0}])))
    seeds["lost"] = records(sub(0, 0b111111), (API | 2, bytes([3, 1])),
                            *[(TICK, bytes([255]))] * 8)
    for kind in ("SUBSCRIBED", "UNSUBSCRIBED", "UPDATES", "WRITTEN", "HEARTBEAT", "ERROR",
                 "EXISTS_REPLY", "RESOLVED_REPLY"):
        seeds["kind_" + kind.lower()] = records(sub(3, 0b1), (0, bmsg(kind, id=1, page=3)))
    return seeds


# ---------------------------------------------------------------- alarmreq

def areq(kind, id, **kw):
    return pb.AlarmRequest(kind=getattr(pb.AlarmRequest, kind), id=id, **kw)


def aval(tag, quality, value=None):
    """A tag value record (selector 0x40): tag index, quality, double."""
    body = bytes([tag, quality])
    if value is not None:
        body += struct.pack("<d", value)
    return (0x40, body)


def ebatch(io, *events):
    b = pb.EventBatch()
    for i, (kind, dev, state) in enumerate(events):
        e = b.events.add(kind=getattr(pb.Event, kind), ioserver=io, ts_ms=1700000000000,
                         seq=i + 1, channel="plant")
        if dev:
            e.device = dev
        if state is not None:
            e.device_state = state
    return b


def alarmreq_seeds():
    T = 0x80
    seeds = {}
    seeds["session"] = records(
        aval(0, 0, 90.0), (T, b"\x05"), aval(1, 0, 1.0), aval(3, 0, 60.0), (T, b"\x01"),
        (0, areq("LIST", 1)), (1, areq("LIST", 2, area="tanks", max_priority=3)),
        (0, areq("ACK", 3, alarms=["D1.L.HIHI", "D1.L.HI"], user="op", comment="seen")),
        (2, areq("ACK", 4, area="pumps")),
        (0, areq("SHELVE", 5, alarms=["D2.T.HI"], duration_ms=60000)),
        (0, areq("OUT_OF_SERVICE", 6, alarms=["D1.TRIP.STATE"])),
        aval(0, 2), (T, b"\x0a"), aval(0, 0, 10.0), (T, b"\x05"),
        (0x20, ebatch("io1", ("DEVICE_STATE", "d1", 1), ("IO_TIMEOUT_RAISE", "d1", None))),
        (0x21, ebatch("io2", ("DEVICE_STATE", "d2", 0))),
        (0x10, pb.IoReply(id=1, status=pb.IoReply.OK)),
        (T, b"\x14"), (0, areq("UNSHELVE", 7, alarms=["D2.T.HI"])),
        (0, areq("IN_SERVICE", 8, alarms=["D1.TRIP.STATE"])),
        (1, areq("HISTORY", 9, limit=5)), (2, areq("HISTORY", 10, alarms=["D1.L.HI"])))
    seeds["refused"] = records(
        (0, areq("ACK", 1)), (0, areq("SHELVE", 2, alarms=["D1.L.HI"])),
        (0, areq("ACK", 3, alarms=["NO.SUCH.HI"])), (0, b"\xff\xfe"),
        (0, areq("SHELVE", 4, alarms=["D1.L.HI"], duration_ms=1 << 60)))
    seeds["nan"] = records(aval(0, 0, float("nan")), aval(0, 0, float("inf")), (T, b"\x09"),
                           aval(4, 0, 1.0), aval(3, 6, 0.0), (0, areq("LIST", 1)))
    # Through the service's broker client (page 1, SUBSCRIBE id 1: D1.L #1, D1.TRIP #2,
    # D2.T #4); 0x81: time passes with the client's timer, 16 s of it loses the broker.
    B, TC = 0x41, 0x81
    seeds["broker"] = records(
        (B, bmsg("SUBSCRIBED", id=1, page=1, tag_ids=[1, 2, 4], base_ts=1700000000000,
                 updates=[{"tag_id": 1, "number": 97.0}, {"tag_id": 2, "integer": 1},
                          {"tag_id": 4, "number": 10.0, "ts": 7}])),
        (TC, b"\x05"),
        (B, bmsg("UPDATES", base_ts=1700000000500,
                 updates=[{"tag_id": 1, "number": 50.0},
                          {"tag_id": 4, "quality": pb.BAD_NO_COMM, "reason": "lost"},
                          {"tag_id": 2, "quality": pb.BAD_NO_COMM, "same_reason": True}])),
        (0, areq("LIST", 1)), (B, bmsg("HEARTBEAT")), (TC, bytes([160])),
        aval(0, 2), (0, areq("LIST", 2)), (TC, b"\x0a"),
        (B, bmsg("UPDATES", missed=3, updates=[{"tag_id": 1, "number": 99.0}])),
        (TC, b"\x05"), (B, bmsg("ERROR", id=9, error="no")),
        (B, bmsg("SUBSCRIBED", id=1, page=1, tag_ids=[1])), (B, b"\x08\x63"),
        (0, areq("ACK", 3, area="tanks", user="op")), (1, areq("HISTORY", 4)))
    seeds["broker_lost"] = records(
        (B, bmsg("SUBSCRIBED", id=1, page=1, tag_ids=[1, 2, 4],
                 updates=[{"tag_id": 1, "number": 4.0}, {"tag_id": 4, "number": 60.0}])),
        (TC, b"\x05"), (TC, bytes([200])), (TC, b"\x01"),
        (B, bmsg("UPDATES", updates=[{"tag_id": 1, "number": 50.0}, {"tag_id": 4, "number": 1.0}])),
        (TC, b"\x05"), (0, areq("LIST", 1)))
    for kind in ("LIST", "ACK", "SHELVE", "UNSHELVE", "OUT_OF_SERVICE", "IN_SERVICE",
                 "HISTORY"):
        seeds["kind_" + kind.lower()] = records(
            (0, areq(kind, 1, alarms=["D1.L.HI"], duration_ms=1000)))
    return seeds


ALARM_IDS = ["D1.L.HIHI", "D1.L.HI", "D1.L.LO", "D1.L.LOLO", "D1.L.COMM", "D1.TRIP.STATE",
             "D1.TRIP.COMM", "D2.T.HI", "io1.COMM", "io2.COMM", "io1.d1.COMM", "io2.d1.COMM",
             "io2.d2.COMM", "io1.plant.d1.IO_TIMEOUT", "io2.plant.d1.IO_TIMEOUT",
             "io2.plant.d2.IO_TIMEOUT", "ALARM.BROKER.COMM"]


def write_dict(name, tokens, source):
    """tokens: str or bytes -> tests/fuzz/dict/<name>.dict."""
    out = ["# written by tests/fuzz/seeds.py from " + source]
    for t in sorted(set(t if isinstance(t, bytes) else t.encode() for t in tokens)):
        out.append('"%s"' % "".join(chr(c) if 32 <= c < 127 and chr(c) not in '\\"'
                                    else "\\x%02x" % c for c in t))
    path = os.path.join(HERE, "dict", name + ".dict")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def alarmreq_dict():
    """The alarm ids, areas and names of fuzz_alarmreq's site, bare and as the
    protobuf fields that carry them (the engine looks them up by hash, which
    libFuzzer does not see compared)."""
    tokens = [SEP]
    for a in ALARM_IDS:
        tokens += [a, pb.AlarmRequest(alarms=[a]).SerializePartialToString()]
    for area in ("tanks", "pumps", "plant"):
        tokens += [area, pb.AlarmRequest(area=area).SerializePartialToString()]
    for io in ("io1", "io2"):
        tokens += [io, pb.Event(ioserver=io).SerializePartialToString()]
    for dev in ("d1", "d2"):
        tokens.append(pb.Event(device=dev).SerializePartialToString())
    tokens.append(pb.Event(channel="plant").SerializePartialToString())
    write_dict("alarmreq", tokens, "the site of tests/fuzz/fuzz_alarmreq.c")


# ---------------------------------------------------------------- main

def load_pb():
    global pb
    import scada_helpers
    pb = scada_helpers.load_proto(tempfile.mkdtemp(prefix="fuzz-seeds-"))


CORPORA = {"site": site_seeds, "rmsg": rmsg_seeds, "ioreq": ioreq_seeds,
           "clientreq": clientreq_seeds, "brokermsg": brokermsg_seeds,
           "alarmreq": alarmreq_seeds}


def main(argv):
    names = argv[1:] or sorted(CORPORA)
    for n in names:
        if n not in CORPORA:
            sys.exit("unknown corpus %s (known: %s)" % (n, ", ".join(sorted(CORPORA))))
    if any(n != "site" for n in names):
        load_pb()
    for n in names:
        write_corpus(n, CORPORA[n]())
        if n == "site":
            site_dict()
        if n == "alarmreq":
            alarmreq_dict()


if __name__ == "__main__":
    main(sys.argv)
