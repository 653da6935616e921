"""System tests of scada-devsim: the real binary on real sockets.

A generated site (network devices, one tcp gateway with three units) is
served by one devsim for most tests; each test uses its own devices so a
fault mode set by one cannot leak into another. Values are read with
pymodbus, faults are driven through the ZeroMQ control socket.
"""
import json
import os
import signal
import socket
import struct
import subprocess
import time

import pytest
import zmq
from pymodbus.client import ModbusTcpClient

NDEV = 14  # network devices d0..d13 of the shared site
UNITS = (1, 2, 7)  # gateway units g1, g2, g7


# ---------------------------------------------------------------- helpers


def device(name, port, index, host="127.0.0.1"):
    """A network device with one tag of every kind of sim."""
    p = name.upper()
    return {
        "name": name,
        "address": "%s:%d" % (host, port),
        "servers": [{"ioserver": "io1", "priority": 1}],
        "tags": [
            {"name": p + ".CONST", "address": "hr:0", "type": "uint16",
             "sim": {"kind": "const", "initial": 100 + index}},
            {"name": p + ".FLOAT", "address": "hr:2", "type": "float32",
             "sim": {"kind": "const", "initial": 12.5}},
            {"name": p + ".SCALED", "address": "hr:4", "type": "int16", "scale": 0.1,
             "sim": {"kind": "const", "initial": -3.7}},
            {"name": p + ".RAMP", "address": "ir:0", "type": "uint16",
             "sim": {"kind": "ramp", "min": 0, "max": 1000, "period_ms": 1000}},
            {"name": p + ".SINE", "address": "ir:1", "type": "int16",
             "sim": {"kind": "sine", "min": -50, "max": 50, "period_ms": 2000}},
            {"name": p + ".NOISE", "address": "ir:2", "type": "float32",
             "sim": {"kind": "noise", "min": 5, "max": 6, "period_ms": 200}},
            {"name": p + ".TOGGLE", "address": "co:0", "type": "bool",
             "sim": {"kind": "toggle", "period_ms": 300}},
            {"name": p + ".FLAG", "address": "di:4", "type": "bool",
             "sim": {"kind": "const", "initial": 1}},
        ],
    }


def make_site(path, base, ndev, control, gateway=True, start=None):
    """Write a site file: ndev network devices on base.., a gateway on base+ndev;
    `start`: the devsim.start commands."""
    channels = [{"name": "net", "type": "network",
                 "devices": [device("d%d" % i, base + i, i) for i in range(ndev)]}]
    if gateway:
        channels.append({
            "name": "gw", "type": "tcp", "address": "127.0.0.1:%d" % (base + ndev),
            "devices": [{"name": "g%d" % u, "unit": u,
                         "servers": [{"ioserver": "io1", "priority": 1}],
                         "tags": [{"name": "G%d.V" % u, "address": "hr:10",
                                   "sim": {"kind": "const", "initial": 1000 + u}}]}
                        for u in UNITS]})
    channels.append({  # never served: serial and listen are skipped
        "name": "bus", "type": "serial", "serial_port": "/dev/null", "baud": 9600,
        "devices": [{"name": "rtu1", "unit": 1, "servers": [{"ioserver": "io1", "priority": 1}],
                     "tags": [{"name": "RTU1.V", "address": "hr:0"}]}]})
    site = {"site": "devsimtest", "devsim": {"control": control},
            "ioservers": [{"name": "io1"}], "channels": channels,
            "security": {"plain": True}}
    if start is not None:
        site["devsim"]["start"] = start
    with open(path, "w") as f:
        # JSON is YAML, and pure-Python yaml.dump takes seconds for 2,000 devices.
        json.dump(site, f, indent=1)
    return path


class Devsim:
    """A running scada-devsim and a REQ socket on its control endpoint."""

    def __init__(self, binary, site, control, extra=(), log=None, env=None, pass_control=True):
        """pass_control=False: devsim takes its control endpoint from the site
        file; `control` is where to reach it."""
        self.control = control
        self.log = log
        argv = [binary, "--config", str(site)]
        if pass_control:
            argv += ["--control", control]
        self.proc = subprocess.Popen([*argv, *extra], stdout=subprocess.DEVNULL, stderr=log,
                                     env=env)
        self.ctx = zmq.Context()
        self.ctx.setsockopt(zmq.LINGER, 0)  # never wait for an unanswered request at exit
        self.sock = None
        deadline = time.time() + 15
        while True:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("scada-devsim exited with %d" % self.proc.returncode)
            try:
                if self.cmd("ping", timeout=0.5) == "ok pong":
                    break
            except TimeoutError:
                pass
            if time.time() > deadline:
                self.stop()
                raise RuntimeError("scada-devsim did not answer ping")

    def _reconnect(self):
        if self.sock is not None:
            self.sock.close(linger=0)
        self.sock = self.ctx.socket(zmq.REQ)
        self.sock.connect(self.control)

    def cmd(self, text, timeout=5.0):
        """Send one command, return the reply text; TimeoutError if none."""
        if self.sock is None:
            self._reconnect()
        self.sock.send_string(text)
        if not self.sock.poll(int(timeout * 1000)):
            self._reconnect()  # a REQ socket that lost its reply is stuck
            raise TimeoutError(text)
        return self.sock.recv_string()

    def ok(self, text):
        reply = self.cmd(text)
        assert reply.startswith("ok"), "%s -> %s" % (text, reply)
        return reply[3:]

    def stats(self, dev=None):
        return json.loads(self.ok("stats" + (" " + dev if dev else "")))

    def stop(self):
        """SIGTERM; returns the exit code."""
        if self.sock is not None:
            self.sock.close(linger=0)
        self.ctx.term()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None


def client(port, timeout=1, host="127.0.0.1"):
    # pymodbus 3.0.0rc1 truncates the timeout to whole seconds (0.5 is 0: no wait).
    c = ModbusTcpClient(host, port=port, timeout=timeout, retries=0)
    assert c.connect(), "connect to %d" % port
    return c


def read_hr(port, addr, count, unit=1, timeout=1):
    c = client(port, timeout)
    try:
        return c.read_holding_registers(addr, count, slave=unit)
    finally:
        c.close()


def f32(hi, lo):
    return struct.unpack(">f", struct.pack(">HH", hi, lo))[0]


def s16(v):
    return v - 65536 if v >= 32768 else v


def mbap_read(tid, unit, addr, count, fc=3):
    return struct.pack(">HHHBBHH", tid, 0, 6, unit, fc, addr, count)


def recv_for(sock, seconds):
    """Everything the peer sends within `seconds` (stops early at EOF)."""
    sock.settimeout(0.05)
    data = b""
    end = time.time() + seconds
    while time.time() < end:
        try:
            chunk = sock.recv(4096)
        except socket.timeout:
            continue
        if not chunk:
            break
        data += chunk
    return data


def failed(result):
    """True when a pymodbus call did not produce a good response."""
    return result is None or isinstance(result, Exception) or result.isError()


# --------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def devsim_bin(bin_dir):
    path = os.path.join(bin_dir, "scada-devsim")
    if not os.path.exists(path):
        pytest.skip("scada-devsim not built")
    return path


@pytest.fixture(scope="module")
def plant(devsim_bin, free_ports, tmp_path_factory):
    """One devsim serving NDEV network devices and a 3-unit gateway."""
    tmp = tmp_path_factory.mktemp("devsim")
    base = free_ports(NDEV + 1)
    control = "tcp://127.0.0.1:%d" % free_ports(1)
    site = make_site(tmp / "site.yaml", base, NDEV, control)
    log = open(tmp / "devsim.log", "wb")
    ds = Devsim(devsim_bin, site, control, log=log)
    ds.base = base
    yield ds
    rc = ds.stop()
    log.close()
    assert rc == 0, "devsim exit code %r; log in %s" % (rc, tmp / "devsim.log")


# ------------------------------------------------------------------ tests


def test_selftest(devsim_bin):
    r = subprocess.run([devsim_bin, "--selftest"], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr.decode()


def test_values_follow_sims(plant):
    port = plant.base + 3
    c = client(port)
    try:
        hr = c.read_holding_registers(0, 5, slave=1)
        assert not failed(hr)
        assert hr.registers[0] == 103  # const uint16, exact
        assert f32(hr.registers[2], hr.registers[3]) == 12.5  # const float32, exact
        assert s16(hr.registers[4]) == -37  # -3.7 with scale 0.1
        assert c.read_discrete_inputs(4, 1, slave=1).bits[0] is True
        samples = []
        toggles = set()
        for _ in range(8):
            ir = c.read_input_registers(0, 4, slave=1)
            assert not failed(ir)
            ramp, sine = ir.registers[0], s16(ir.registers[1])
            noise = f32(ir.registers[2], ir.registers[3])
            assert 0 <= ramp <= 1000
            assert -50 <= sine <= 50
            assert 5 <= noise <= 6 or noise == 0  # noise shows initial (min) first
            samples.append((ramp, sine, noise))
            toggles.add(c.read_coils(0, 1, slave=1).bits[0])
            time.sleep(0.1)
        assert len({s[0] for s in samples}) > 3, samples  # the ramp moves
        assert len({s[1] for s in samples}) > 3, samples  # the sine moves
        assert len({s[2] for s in samples}) > 1, samples  # the noise moves
        assert toggles == {True, False}
        # Outside the tags: illegal data address.
        r = c.read_holding_registers(100, 1, slave=1)
        assert failed(r) and r.exception_code == 2
    finally:
        c.close()
    assert plant.ok("get D3.CONST") == "103"
    assert plant.ok("get D3.FLOAT") == "12.5"
    assert plant.ok("get D3.SCALED") == "-3.7"
    assert plant.ok("get D3.FLAG") == "1"


def test_set_get_and_client_writes(plant):
    port = plant.base + 4
    assert plant.ok("set D4.CONST 4242") == "4242"
    assert read_hr(port, 0, 1).registers == [4242]
    assert plant.ok("set D4.FLOAT 0.25") == "0.25"
    r = read_hr(port, 2, 2).registers
    assert f32(*r) == 0.25
    # A moving tag that is set stays frozen.
    assert plant.ok("set D4.RAMP 7") == "7"
    c = client(port)
    try:
        for _ in range(3):
            assert c.read_input_registers(0, 1, slave=1).registers == [7]
            time.sleep(0.15)
        # Client writes land in the mapping and stick on const tags.
        assert not failed(c.write_register(0, 555, slave=1))
        time.sleep(0.25)  # past a sim tick
        assert c.read_holding_registers(0, 1, slave=1).registers == [555]
    finally:
        c.close()
    assert plant.ok("get D4.CONST") == "555"
    assert plant.ok("set D4.TOGGLE true") == "1"
    assert plant.cmd("set D4.CONST 70000").startswith("error: ")
    assert plant.cmd("set D4.CONST 1.5x").startswith("error: ")
    assert plant.cmd("set D4.FLAG 2").startswith("error: ")
    assert plant.cmd("get NOPE.TAG").startswith("error: no tag")
    assert "not serve" in plant.cmd("get RTU1.V")


def test_silent(plant):
    port = plant.base + 5
    plant.ok("silent d5")
    c = client(port, timeout=1)  # the connection is still accepted
    try:
        t0 = time.time()
        assert failed(c.read_holding_registers(0, 1, slave=1))
        assert time.time() - t0 >= 0.9
    finally:
        c.close()
    st = plant.stats("d5")["devices"]["d5"]
    assert st["mode"] == "silent" and st["ignored"] >= 1 and st["listening"]
    plant.ok("normal d5")
    assert read_hr(port, 0, 1).registers == [105]


def test_refuse_and_normal(plant):
    port = plant.base + 6
    keep = socket.create_connection(("127.0.0.1", port), timeout=2)
    time.sleep(0.05)
    plant.ok("refuse d6")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    assert recv_for(keep, 0.5) == b""  # the open connection was closed
    keep.close()
    assert plant.stats("d6")["devices"]["d6"]["listening"] is False
    plant.ok("normal d6")
    assert read_hr(port, 0, 1).registers == [106]


def test_delay(plant):
    port = plant.base + 7
    plant.ok("delay d7 300")
    c = client(port, timeout=2)
    try:
        t0 = time.time()
        r = c.read_holding_registers(0, 1, slave=1)
        elapsed = time.time() - t0
        assert not failed(r) and r.registers == [107]
        assert 0.3 <= elapsed < 1.5, elapsed
    finally:
        c.close()
    # Pipelined requests are answered in order, each 300 ms after arrival.
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        t0 = time.time()
        s.sendall(mbap_read(1, 1, 0, 1) + mbap_read(2, 1, 2, 2))
        data = recv_for(s, 0.6)
        elapsed = time.time() - t0
        assert len(data) == 11 + 13
        assert struct.unpack(">H", data[:2])[0] == 1
        assert struct.unpack(">H", data[11:13])[0] == 2
    plant.ok("normal d7")
    t0 = time.time()
    assert read_hr(port, 0, 1).registers == [107]
    assert time.time() - t0 < 0.25


def test_exception(plant):
    port = plant.base + 8
    plant.ok("exception d8 2")
    r = read_hr(port, 0, 1)
    assert failed(r) and r.exception_code == 2
    plant.ok("exception d8 6")
    r = read_hr(port, 0, 1)
    assert failed(r) and r.exception_code == 6
    assert plant.stats("d8")["devices"]["d8"]["exceptions"] >= 2
    plant.ok("normal d8")
    assert read_hr(port, 0, 1).registers == [108]


def test_garbage(plant):
    port = plant.base + 9
    good = mbap_read(0x1234, 1, 0, 1)
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(good)
        expected = recv_for(s, 0.2)
    assert expected == bytes.fromhex("123400000005010302006d")  # 109
    plant.ok("garbage d9")
    bad = 0
    for _ in range(12):
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(good)
            answer = recv_for(s, 0.15)
        assert answer != expected
        bad += 1
    assert bad == 12
    assert failed(read_hr(port, 0, 1))
    assert plant.stats("d9")["devices"]["d9"]["garbage"] >= 12
    plant.ok("normal d9")
    assert read_hr(port, 0, 1).registers == [109]


def test_disconnect(plant):
    port = plant.base + 10
    a = socket.create_connection(("127.0.0.1", port), timeout=2)
    b = socket.create_connection(("127.0.0.1", port), timeout=2)
    time.sleep(0.1)
    assert plant.ok("disconnect d10") == "2"
    assert recv_for(a, 0.5) == b"" and recv_for(b, 0.5) == b""
    a.close()
    b.close()
    assert read_hr(port, 0, 1).registers == [110]  # still listening


def test_stats_counts_requests(plant):
    port = plant.base + 11
    before = plant.stats("d11")["devices"]["d11"]["requests"]
    c = client(port)
    try:
        for _ in range(5):
            assert not failed(c.read_holding_registers(0, 1, slave=1))
        st = plant.stats("d11")
        d = st["devices"]["d11"]
        assert d["requests"] == before + 5 and d["replies"] >= 5
        assert d["connections"] == 1 and d["mode"] == "normal"
        assert st["totals"]["devices"] == NDEV + len(UNITS)
        assert st["totals"]["requests"] >= 5
    finally:
        c.close()
    everything = plant.stats()
    assert len(everything["devices"]) == NDEV + len(UNITS)
    assert set(plant.stats("d0,d1")["devices"]) == {"d0", "d1"}


def test_malformed_stream_dropped(plant):
    port = plant.base + 2
    before = plant.stats("d2")["devices"]["d2"]
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert recv_for(s, 1.0) == b""
    # Bad counts and unknown functions get exceptions, without stalling the loop.
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        t0 = time.time()
        s.sendall(mbap_read(5, 1, 0, 200) + struct.pack(">HHHBB", 6, 0, 2, 1, 0x2B) +
                  mbap_read(7, 1, 0, 1))
        data = recv_for(s, 0.3)
        assert data[:9] == bytes.fromhex("000500000003018303")
        assert data[9:18] == bytes.fromhex("00060000000301ab01")
        assert data[18:] == bytes.fromhex("0007000000050103020066")
        assert time.time() - t0 < 1.0
    st = plant.stats()["totals"]
    assert st["malformed"] >= 1
    assert plant.stats("d2")["devices"]["d2"]["accepted"] == before["accepted"] + 2


def test_gateway_dispatches_by_unit(plant):
    port = plant.base + NDEV
    c = client(port)
    try:
        for u in UNITS:
            r = c.read_holding_registers(10, 1, slave=u)
            assert not failed(r) and r.registers == [1000 + u], u
        r = c.read_holding_registers(10, 1, slave=9)  # nobody is unit 9
        assert failed(r) and r.exception_code == 0x0B
    finally:
        c.close()
    # A fault on one unit leaves the others alone.
    plant.ok("exception g2 4")
    c = client(port)
    try:
        assert c.read_holding_registers(10, 1, slave=1).registers == [1001]
        r = c.read_holding_registers(10, 1, slave=2)
        assert failed(r) and r.exception_code == 4
    finally:
        c.close()
    # Refusing one unit: the gateway still listens and says target failed;
    # refusing all of them closes the port.
    plant.ok("refuse g1")
    r = read_hr(port, 10, 1, unit=1)
    assert failed(r) and r.exception_code == 0x0B
    plant.ok("refuse g1,g2,g7")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    plant.ok("normal g1,g2,g7")
    assert read_hr(port, 10, 1, unit=7).registers == [1007]
    st = plant.stats("g7")["devices"]["g7"]
    assert st["gateway"] is True and st["unit"] == 7


def test_control_errors(plant):
    for bad, why in [
        ("", "empty"),
        ("frobnicate d0", "unknown command"),
        ("silent", "usage"),
        ("silent nosuch", "no device nosuch"),
        ("silent rtu1", "not served"),
        ("silent d0,nosuch", "no device nosuch"),
        ("delay d0", "usage"),
        ("delay d0 -5", "MS"),
        ("delay d0 soon", "MS"),
        ("exception d0 0", "CODE"),
        ("exception d0 12", "CODE"),
        ("set D0.CONST", "usage"),
        ("get", "usage"),
        ("ping pong", "no arguments"),
        ("stats nosuch", "no device"),
        ("x " * 20, "too many"),
        ("flap d0", "usage"),
        ("flap d0 1000", "usage"),
        ("flap d0 0 1000", "UP_MS must be an integer in 1..86400000"),
        ("flap d0 1000 86400001", "DOWN_MS"),
        ("flap d0 1000 soon", "DOWN_MS"),
        ("flap d0 1000 1000 delay", "usage"),
        ("flap d0 1000 1000 late 5", "usage"),
        ("flap d0 1000 1000 delay -1", "delay MS"),
        ("flap d0,nosuch 1000 1000", "no device nosuch"),
    ]:
        reply = plant.cmd(bad)
        assert reply.startswith("error: ") and why in reply, (bad, reply)
    # The failed list command changed nothing.
    assert plant.stats("d0")["devices"]["d0"]["mode"] == "normal"
    # A multi-frame request gets an error, not a crash.
    plant.sock.send_multipart([b"ping", b"extra"])
    assert plant.sock.recv_string().startswith("error: ")
    assert plant.cmd("help").startswith("ok ")
    # An oversized request is dropped by libzmq; others go on being served.
    big = plant.ctx.socket(zmq.REQ)
    big.connect(plant.control)
    big.send(b"x" * 100000)
    assert not big.poll(300)
    big.close(linger=0)
    assert plant.cmd("ping") == "ok pong"


def wait_flap(ds, dev, up, min_left_ms, timeout=10):
    """Wait until `dev` is flapping in the phase `up` with at least
    min_left_ms of it left; returns its stats."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = ds.stats(dev)["devices"][dev]
        assert st["mode"] == "flap", st
        if st["flap"]["up"] == up and st["flap"]["next_ms"] >= min_left_ms:
            return st
        time.sleep(0.05)
    raise AssertionError("%s never %s with %d ms left" % (dev, "up" if up else "down",
                                                          min_left_ms))


def ask(sock, tid, unit=1, wait=0.4):
    """Send one read of hr:0 on an open connection; the transaction ids of
    the answers that came within `wait` seconds."""
    sock.sendall(mbap_read(tid, unit, 0 if unit == 1 else 10, 1))
    data = recv_for(sock, wait)
    tids = []
    while len(data) >= 9:
        n = 6 + struct.unpack(">H", data[4:6])[0]
        tids.append(struct.unpack(">H", data[:2])[0])
        data = data[n:]
    return tids


def test_flap(plant):
    port = plant.base + 12
    gw = plant.base + NDEV
    # One network device and one unit behind the gateway, the same cycle.
    plant.ok("flap d12,g7 1500 1500")
    st = plant.stats("d12")["devices"]["d12"]
    assert st["mode"] == "flap" and st["listening"]
    assert st["flap"]["up_ms"] == 1500 and st["flap"]["down_ms"] == 1500
    assert st["flap"]["up"] is True and 0 < st["flap"]["next_ms"] <= 1500  # starts up
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s, \
            socket.create_connection(("127.0.0.1", gw), timeout=2) as g:
        wait_flap(plant, "d12", True, 700)
        assert ask(s, 1) == [1]
        assert ask(g, 1, unit=7) == [1]
        before = plant.stats("d12")["devices"]["d12"]["ignored"]
        # Down: silent, the connection kept; the gateway's other units answer.
        wait_flap(plant, "d12", False, 900)
        assert ask(s, 2) == []
        assert ask(g, 2, unit=7) == []
        assert ask(g, 3, unit=1) == [3]
        st = plant.stats("d12")["devices"]["d12"]
        assert st["ignored"] == before + 1 and st["connections"] == 1
        assert plant.stats("g7")["devices"]["g7"]["mode"] == "flap"
        # Up again: answers on the same connection, nothing for the dropped one.
        wait_flap(plant, "d12", True, 700)
        assert ask(s, 4) == [4]
        assert ask(g, 4, unit=7) == [4]
    plant.ok("normal d12,g7")
    st = plant.stats("d12")["devices"]["d12"]
    assert st["mode"] == "normal" and "flap" not in st
    assert read_hr(port, 0, 1).registers == [112]


def test_flap_with_delay(plant):
    port = plant.base + 13
    plant.ok("flap d13 2000 1200 delay 300")
    st = plant.stats("d13")["devices"]["d13"]
    assert st["mode"] == "flap" and st["delay_ms"] == 300 and st["flap"]["up"] is True
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        wait_flap(plant, "d13", True, 1200)
        t0 = time.time()
        s.sendall(mbap_read(1, 1, 0, 1))
        assert recv_for(s, 0.2) == b""  # not before the delay
        data = recv_for(s, 0.6)
        elapsed = time.time() - t0
        assert struct.unpack(">H", data[:2])[0] == 1 and data[-2:] == b"\x00\x71"  # 113
        assert 0.3 <= elapsed < 1.0, elapsed
        wait_flap(plant, "d13", False, 900)
        assert ask(s, 2, wait=0.6) == []
        wait_flap(plant, "d13", True, 1200)
        assert ask(s, 3, wait=0.6) == [3]
    plant.ok("normal d13")
    t0 = time.time()
    assert read_hr(port, 0, 1).registers == [113]
    assert time.time() - t0 < 0.25


def test_start_commands(devsim_bin, tmp_path, free_ports):
    base = free_ports(4)
    control = "tcp://127.0.0.1:%d" % free_ports(1)
    site = make_site(tmp_path / "site.yaml", base, 3, control,
                     start=["silent d1,g2", "flap d2 60000 1000 delay 100", "set D0.CONST 4321"])
    log = open(tmp_path / "devsim.log", "wb")
    ds = Devsim(devsim_bin, site, control, log=log)
    try:
        # In force before the control socket answers ping.
        st = ds.stats()["devices"]
        assert st["d1"]["mode"] == "silent" and st["g2"]["mode"] == "silent"
        assert st["d2"]["mode"] == "flap" and st["d2"]["flap"]["up"] is True
        assert st["d2"]["delay_ms"] == 100 and st["d0"]["mode"] == "normal"
        assert read_hr(base, 0, 1).registers == [4321]
        assert failed(read_hr(base + 1, 0, 1))
        assert read_hr(base + 3, 10, 1, unit=1).registers == [1001]
        assert failed(read_hr(base + 3, 10, 1, unit=2))
        # Control commands replace them as any mode.
        ds.ok("normal d1")
        assert read_hr(base + 1, 0, 1).registers == [101]
    finally:
        assert ds.stop() == 0
        log.close()
    text = (tmp_path / "devsim.log").read_text()
    assert "start: silent d1,g2: ok" in text, text


def test_bad_start_command_exits_2(devsim_bin, tmp_path, free_ports):
    base = free_ports(4)
    control = "tcp://127.0.0.1:%d" % free_ports(1)
    for bad, why in [("silent nosuch", "no device nosuch in the site"),
                     ("flap d0 1000", "usage: flap DEV UP_MS DOWN_MS [delay MS]"),
                     ("frobnicate d0", "unknown command")]:
        site = make_site(tmp_path / "site.yaml", base, 3, control, start=["silent d1", bad])
        line = 1 + next(i for i, text in enumerate(open(site)) if bad in text)
        r = subprocess.run([devsim_bin, "--config", str(site)], capture_output=True, timeout=10)
        err = r.stderr.decode()
        assert r.returncode == 2, (bad, err)
        assert '%s:%d: devsim.start[1]: "%s" failed: error: ' % (site, line, bad) in err, err
        assert why in err, err
        # The devices were closed again: their ports are free.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", base + 1))
    # Not a string: the loader's error.
    site = make_site(tmp_path / "site.yaml", base, 3, control, start=[{"silent": "d1"}])
    r = subprocess.run([devsim_bin, "--config", str(site)], capture_output=True, timeout=10)
    assert r.returncode == 2
    assert b"devsim.start[0]: expected a control command" in r.stderr, r.stderr


ENV_SITE = """\
site: envtest
devsim:
  control: tcp://${DEVSIM_T_HOST:-127.0.0.1}:${DEVSIM_T_CONTROL}
  start: ["silent ${DEVSIM_T_SILENT:-d1}"]
ioservers: [{name: io1}]
channels:
  - name: net
    type: network
    devices:
      - name: d0
        address: ${DEVSIM_T_ADDR:-127.0.0.1}:${DEVSIM_T_PORT}
        servers: [io1]
        tags: [{name: D0.V, address: "hr:0", sim: {kind: const, initial: "${DEVSIM_T_V:-7}"}}]
      - name: d1
        address: "127.0.0.1:${DEVSIM_T_PORT1:-1}"
        servers: [io1]
security: {plain: true}
"""


def test_env_variables_in_site(devsim_bin, tmp_path, free_ports):
    base = free_ports(2)
    ctl = free_ports(1)
    site = tmp_path / "site.yaml"
    site.write_text(ENV_SITE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVSIM_T_")}
    # The control endpoint names a host (a docker-compose service): it is
    # bound on every interface and reached at 127.0.0.1.
    env.update(DEVSIM_T_HOST="devsim.scada-test.invalid", DEVSIM_T_CONTROL=str(ctl),
               DEVSIM_T_PORT=str(base), DEVSIM_T_PORT1=str(base + 1), DEVSIM_T_V="42")
    log = open(tmp_path / "devsim.log", "wb")
    ds = Devsim(devsim_bin, site, "tcp://127.0.0.1:%d" % ctl, log=log, env=env,
                pass_control=False)
    try:
        assert read_hr(base, 0, 1).registers == [42]
        st = ds.stats()["devices"]
        assert st["d0"]["endpoint"] == "127.0.0.1:%d" % base
        assert st["d1"]["mode"] == "silent" and st["d1"]["endpoint"] == "127.0.0.1:%d" % (base + 1)
    finally:
        assert ds.stop() == 0
        log.close()
    text = (tmp_path / "devsim.log").read_text()
    assert ("binding tcp://devsim.scada-test.invalid:%d as tcp://*:%d: "
            "devsim.scada-test.invalid is a host name" % (ctl, ctl)) in text, text
    # A variable without default that is not set: exit 2, file, line, key, name.
    del env["DEVSIM_T_PORT"]
    r = subprocess.run([devsim_bin, "--config", str(site)], capture_output=True, timeout=10,
                       env=env)
    assert r.returncode == 2
    assert ("%s:11: channels[0].devices[0].address: environment variable DEVSIM_T_PORT is not "
            "set (write ${DEVSIM_T_PORT:-default} to give a default)" % site) in r.stderr.decode()


def test_star_targets_every_device(plant):
    plant.ok("delay * 50")
    st = plant.stats()["devices"]
    assert all(d["mode"] == "delay" and d["delay_ms"] == 50 for d in st.values())
    plant.ok("normal *")
    st = plant.stats()["devices"]
    assert all(d["mode"] == "normal" for d in st.values())
    assert read_hr(plant.base + 1, 0, 1).registers == [101]


def test_bad_usage_exits_2(devsim_bin, tmp_path):
    for args in ([], ["--bogus"], ["--config"], ["--config", "x.yaml", "extra"],
                 ["--config", "x.yaml", "--log-level", "loud"],
                 ["--config", "x.yaml", "--seed", "abc"]):
        r = subprocess.run([devsim_bin, *args], capture_output=True, timeout=10)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr, args
    r = subprocess.run([devsim_bin, "--help"], capture_output=True, timeout=10)
    assert r.returncode == 0 and b"usage: scada-devsim" in r.stdout


def test_bad_site_exits_2(devsim_bin, tmp_path, free_ports):
    site = make_site(tmp_path / "site.yaml", free_ports(2), 1, "tcp://127.0.0.1:1")
    text = open(site).read().replace('"uint16"', '"flaot32"', 1)
    open(site, "w").write(text)
    r = subprocess.run([devsim_bin, "--config", str(site)], capture_output=True, timeout=10)
    assert r.returncode == 2
    assert b"site.yaml:" in r.stderr and b"flaot32" in r.stderr, r.stderr
    r = subprocess.run([devsim_bin, "--config", str(tmp_path / "missing.yaml")],
                       capture_output=True, timeout=10)
    assert r.returncode == 2 and b"missing.yaml" in r.stderr
    # --only naming a device the site does not have is a usage error too.
    make_site(site, free_ports(2), 1, "tcp://127.0.0.1:1")
    r = subprocess.run([devsim_bin, "--config", str(site), "--only", "d0,nosuch"],
                       capture_output=True, timeout=10)
    assert r.returncode == 2 and b"nosuch" in r.stderr


def test_port_in_use_exits_1(devsim_bin, tmp_path, free_ports):
    base = free_ports(2)
    site = make_site(tmp_path / "site.yaml", base, 2, "tcp://127.0.0.1:%d" % free_ports(1),
                     gateway=False)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", base + 1))
        squatter.listen()
        r = subprocess.run([devsim_bin, "--config", str(site)], capture_output=True,
                           timeout=10)
    assert r.returncode == 1
    assert b"d1" in r.stderr and b"%d" % (base + 1) in r.stderr


def test_bad_control_endpoint_exits_1(devsim_bin, tmp_path, free_ports):
    site = make_site(tmp_path / "site.yaml", free_ports(2), 1, "tcp://127.0.0.1:1")
    r = subprocess.run([devsim_bin, "--config", str(site), "--control", "bogus://x"],
                       capture_output=True, timeout=10)
    assert r.returncode == 1 and b"bogus://x" in r.stderr


def test_only_and_remote_devices(devsim_bin, tmp_path, free_ports):
    base = free_ports(4)
    control = "tcp://127.0.0.1:%d" % free_ports(1)
    site = make_site(tmp_path / "site.yaml", base, 3, control)
    # d2 lives on an address this machine does not have: skipped, not fatal.
    text = open(site).read().replace("127.0.0.1:%d" % (base + 2), "192.0.2.1:%d" % (base + 2))
    open(site, "w").write(text)
    ds = Devsim(devsim_bin, site, control, extra=["--only", "d1,d2,g1"],
                log=subprocess.DEVNULL)
    try:
        assert read_hr(base + 1, 0, 1).registers == [101]
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", base), timeout=2)
        assert read_hr(base + 3, 10, 1, unit=1).registers == [1001]
        r = read_hr(base + 3, 10, 1, unit=2)  # g2 not in --only
        assert failed(r) and r.exception_code == 0x0B
        assert set(ds.stats()["devices"]) == {"d1", "g1"}
        assert "not served" in ds.cmd("silent d0")
    finally:
        assert ds.stop() == 0


def test_two_thousand_devices(devsim_bin, tmp_path, free_ports):
    # Every device on its own loopback address and one shared port, as field
    # devices have their own IP: no need for 2,000 free consecutive ports.
    n = 2000
    port = free_ports(1)
    host = lambda i: "127.3.%d.%d" % (i // 250, i % 250 + 1)
    control = "tcp://127.0.0.1:%d" % free_ports(1)
    site = {"site": "devsimtest", "security": {"plain": True},
            "devsim": {"control": control}, "ioservers": [{"name": "io1"}],
            "channels": [{"name": "net", "type": "network",
                          "devices": [device("d%d" % i, port, i, host(i)) for i in range(n)]}]}
    path = tmp_path / "site.yaml"
    path.write_text(json.dumps(site))
    t0 = time.time()
    ds = Devsim(devsim_bin, path, control, log=subprocess.DEVNULL)
    try:
        started = time.time() - t0
        assert started < 10, started
        st = ds.stats()["totals"]
        assert st["devices"] == n and st["listening"] == n
        # 50 devices spread over the range, all connected at once.
        sample = list(range(0, n, n // 50))[:50]
        clients = {i: client(port, host=host(i)) for i in sample}
        try:
            for i, c in clients.items():
                r = c.read_holding_registers(0, 1, slave=1)
                assert not failed(r) and r.registers == [100 + i], i
            assert ds.stats()["totals"]["connections"] == len(sample)
        finally:
            for c in clients.values():
                c.close()
        assert ds.ok("get D1999.CONST") == "2099"
    finally:
        assert ds.stop() == 0
