"""System tests of scada-devsim's Modbus RTU transport over pty pairs.

socat makes each serial bus: two ptys joined back to back, one end
(`dev`) for devsim, the other (`host`) for the test, which plays the
master with pymodbus's serial RTU client or with its own raw frames (CRC
included) when it needs to send what no client would: bad CRCs, noise,
broadcasts, unknown units. One devsim serves two buses for most tests,
9600 8E1 and 19200 8N1; each test uses its own units so a fault mode set by
one cannot leak into another.
"""
import json
import os
import random
import select
import shutil
import signal
import subprocess
import termios
import time

import pytest
import zmq

pytest.importorskip("serial", reason="pyserial is missing (Debian python3-serial; make deps)")
from pymodbus.client import ModbusSerialClient  # noqa: E402 (after the skip)
from pymodbus.framer.rtu_framer import ModbusRtuFramer  # noqa: E402

# Bus A: units 1..6, each with its own job in the tests below. Bus B: one unit.
A_UNITS = {1: "ma1", 2: "ma2", 3: "ma3", 4: "ma4", 5: "ma5", 6: "ma6"}
QUIET = 0.3  # s: long enough to say "no answer" for a device that answers in ~1 ms


# ---------------------------------------------------------------- helpers


def crc16(data):
    """CRC-16/Modbus, as the two bytes sent on the line (low byte first)."""
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return bytes((crc & 0xFF, crc >> 8))


def frame(unit, pdu):
    body = bytes([unit]) + pdu
    return body + crc16(body)


def read_req(unit, addr, count, fc=3):
    return frame(unit, bytes([fc]) + addr.to_bytes(2, "big") + count.to_bytes(2, "big"))


def write_req(unit, addr, value):
    return frame(unit, bytes([6]) + addr.to_bytes(2, "big") + value.to_bytes(2, "big"))


def device(name, unit):
    p = name.upper()
    return {"name": name, "unit": unit, "servers": [{"ioserver": "io1", "priority": 1}],
            "tags": [
                {"name": p + ".CONST", "address": "hr:0",
                 "sim": {"kind": "const", "initial": 100 + unit}},
                {"name": p + ".SET", "address": "hr:1", "sim": {"kind": "const", "initial": 0}},
                {"name": p + ".COIL", "address": "co:0", "type": "bool",
                 "sim": {"kind": "const", "initial": 1}},
                {"name": p + ".RAMP", "address": "ir:0",
                 "sim": {"kind": "ramp", "min": 0, "max": 1000, "period_ms": 1000}},
            ]}


def serial_channel(name, port, devices, baud, parity="N", stop_bits=1):
    return {"name": name, "type": "serial", "serial_port": port, "baud": baud,
            "parity": parity, "stop_bits": stop_bits, "devices": devices}


def write_site(path, control, channels):
    site = {"site": "rtutest", "security": {"plain": True},
            "devsim": {"control": control}, "ioservers": [{"name": "io1"}],
            "channels": channels}
    path.write_text(json.dumps(site))
    return path


class Bus:
    """A pty pair joined by socat: devsim opens `dev`, the test `host`."""

    def __init__(self, folder, name):
        self.dev = str(folder / (name + "-dev"))
        self.host = str(folder / (name + "-host"))
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            ["socat", "pty,raw,echo=0,link=" + self.dev, "pty,raw,echo=0,link=" + self.host],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 5
        while not (os.path.exists(self.dev) and os.path.exists(self.host)):
            assert self.proc.poll() is None, "socat exited"
            assert time.time() < deadline, "socat made no ptys"
            time.sleep(0.01)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(5)
        self.proc = None


class Line:
    """The master's end of a bus, raw: write frames, read what comes back."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        attrs = termios.tcgetattr(self.fd)
        attrs[0] = attrs[1] = attrs[3] = 0  # raw: no input, output or local processing
        attrs[2] = termios.CS8 | termios.CREAD | termios.CLOCAL
        termios.tcsetattr(self.fd, termios.TCSANOW, attrs)

    def close(self):
        os.close(self.fd)

    def send(self, data, flush=True):
        if flush:
            termios.tcflush(self.fd, termios.TCIFLUSH)  # leftovers of earlier tests
        os.write(self.fd, data)

    def recv(self, timeout, quiet=0.05):
        """Bytes received until `quiet` s of silence after the first, or `timeout`."""
        data = b""
        end = time.time() + timeout
        while True:
            left = end - time.time() if not data else quiet
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                return data
            data += os.read(self.fd, 1024)

    def ask(self, request, timeout=1.0):
        self.send(request)
        return self.recv(timeout)


def good_reply(reply, unit, fc):
    return (len(reply) >= 5 and reply[0] == unit and reply[1] == fc
            and crc16(reply[:-2]) == reply[-2:])


def regs(reply):
    n = reply[2] // 2
    return [int.from_bytes(reply[3 + 2 * i:5 + 2 * i], "big") for i in range(n)]


class Devsim:
    """A running scada-devsim and a REQ socket on its control endpoint."""

    def __init__(self, binary, site, control, log, extra=()):
        self.control = control
        self.proc = subprocess.Popen([binary, "--config", str(site), "--control", control,
                                      *extra], stdout=subprocess.DEVNULL, stderr=log)
        self.ctx = zmq.Context()
        self.ctx.setsockopt(zmq.LINGER, 0)
        self.sock = None
        deadline = time.time() + 15
        while True:
            assert self.proc.poll() is None, "scada-devsim exited with %d" % self.proc.returncode
            try:
                if self.cmd("ping", timeout=0.5) == "ok pong":
                    return
            except TimeoutError:
                pass
            assert time.time() < deadline, "scada-devsim did not answer ping"

    def cmd(self, text, timeout=5.0):
        if self.sock is None:
            self.sock = self.ctx.socket(zmq.REQ)
            self.sock.connect(self.control)
        self.sock.send_string(text)
        if not self.sock.poll(int(timeout * 1000)):
            self.sock.close(linger=0)
            self.sock = None
            raise TimeoutError(text)
        return self.sock.recv_string()

    def ok(self, text):
        reply = self.cmd(text)
        assert reply.startswith("ok"), "%s -> %s" % (text, reply)
        return reply[3:]

    def stats(self, dev=None):
        return json.loads(self.ok("stats" + (" " + dev if dev else "")))

    def bus(self, channel):
        return self.stats()["serial"][channel]

    def holds(self, path):
        """True when devsim has `path` (a pty) open."""
        target = os.path.realpath(path)
        fds = "/proc/%d/fd" % self.proc.pid
        for fd in os.listdir(fds):
            try:
                if os.readlink(os.path.join(fds, fd)) == target:
                    return True
            except OSError:
                pass
        return False

    def stop(self):
        if self.sock is not None:
            self.sock.close(linger=0)
        self.ctx.term()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def wait_for(check, timeout, what):
    deadline = time.time() + timeout
    while not check():
        assert time.time() < deadline, what
        time.sleep(0.05)


def failed(result):
    return result is None or isinstance(result, Exception) or result.isError()


# --------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def devsim_bin(bin_dir):
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed (it makes the pty pairs): apt-get install socat")
    path = os.path.join(bin_dir, "scada-devsim")
    if not os.path.exists(path):
        pytest.skip("scada-devsim not built")
    return path


@pytest.fixture(scope="module")
def plant(devsim_bin, free_ports, tmp_path_factory):
    """Bus a (9600 8E1, units 1..6) and bus b (19200 8N1, unit 1) on one devsim."""
    tmp = tmp_path_factory.mktemp("rtu")
    bus_a, bus_b = Bus(tmp, "a").start(), Bus(tmp, "b").start()
    control = "tcp://127.0.0.1:%d" % free_ports(1)
    site = write_site(tmp / "site.yaml", control, [
        serial_channel("a", bus_a.dev, [device(n, u) for u, n in A_UNITS.items()], 9600, "E"),
        serial_channel("b", bus_b.dev, [device("mb1", 1)], 19200),
    ])
    log = open(tmp / "devsim.log", "wb")
    ds = Devsim(devsim_bin, site, control, log)
    ds.a, ds.b = bus_a, bus_b
    ds.line_a, ds.line_b = Line(bus_a.host), Line(bus_b.host)
    yield ds
    ds.line_a.close()
    ds.line_b.close()
    rc = ds.stop()
    bus_a.stop()
    bus_b.stop()
    log.close()
    assert rc == 0, "devsim exit code %r; log in %s" % (rc, tmp / "devsim.log")


# ------------------------------------------------------------------ tests


def test_selftest_covers_rtu(devsim_bin):
    r = subprocess.run([devsim_bin, "--selftest"], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr.decode()
    assert b"rtuframe_test: OK" in r.stderr and b"mbserve_test: OK" in r.stderr


def test_line_settings_from_site(plant):
    # What devsim set on its end, read back from the pty. A pty keeps the
    # speed and stop bits but always reports 8 data bits and no parity (Linux
    # pty_set_termios), so devsim reports both what the site asked for
    # (`framing`) and what the port kept (`line`).
    for path, speed, parity in ((plant.a.dev, termios.B9600, True),
                                (plant.b.dev, termios.B19200, False)):
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            iflag, _, cflag, lflag, ispeed, ospeed, _ = termios.tcgetattr(fd)
        finally:
            os.close(fd)
        assert (ispeed, ospeed) == (speed, speed), path
        assert cflag & termios.CSIZE == termios.CS8
        assert not cflag & termios.CSTOPB and not cflag & termios.PARODD
        assert bool(iflag & termios.INPCK) is parity  # parity checking asked for
        assert not iflag & (termios.IXON | termios.ICRNL)  # no flow control, no translation
        assert not lflag & (termios.ICANON | termios.ECHO | termios.ISIG)  # raw
    st = plant.stats()
    assert st["serial"]["a"]["framing"] == "8E1" and st["serial"]["a"]["baud"] == 9600
    assert st["serial"]["a"]["line"] == "8N1"  # the pty dropped the parity
    assert st["serial"]["b"]["framing"] == "8N1" and st["serial"]["b"]["baud"] == 19200
    assert st["serial"]["b"]["line"] == "8N1"
    assert st["serial"]["a"]["open"] and st["serial"]["b"]["open"]
    assert st["serial"]["a"]["units"] == len(A_UNITS)
    d = st["devices"]["ma1"]
    assert d["transport"] == "rtu" and d["channel"] == "a" and d["endpoint"] == plant.a.dev
    assert d["listening"] is True and d["unit"] == 1
    assert st["totals"]["serial_open"] == 2 and st["totals"]["devices"] == len(A_UNITS) + 1


def serial_client(path, baud):
    # Parity "N" even on the 8E1 bus: pyserial's tcsetattr with parity fails
    # on a pty (EINVAL), and a pty carries bytes without parity anyway.
    c = ModbusSerialClient(path, framer=ModbusRtuFramer, baudrate=baud, parity="N", bytesize=8,
                           stopbits=1, timeout=1, retries=0)
    assert c.connect()
    return c


def test_pymodbus_reads_and_writes_two_units(plant):
    c = serial_client(plant.a.host, 9600)
    try:
        r1 = c.read_holding_registers(0, 1, slave=1)
        r2 = c.read_holding_registers(0, 1, slave=2)
        assert not failed(r1) and r1.registers == [101]
        assert not failed(r2) and r2.registers == [102]
        co = c.read_coils(0, 1, slave=2)
        assert not failed(co) and co.bits[0] is True
        ir = c.read_input_registers(0, 1, slave=1)
        assert not failed(ir) and 0 <= ir.registers[0] <= 1000
        assert not failed(c.write_register(1, 4321, slave=1))
        assert not failed(c.write_coil(0, False, slave=2))
        r = c.read_holding_registers(50, 1, slave=1)  # outside the tags
        assert failed(r) and r.exception_code == 2
    finally:
        c.close()
    assert plant.ok("get MA1.SET") == "4321"
    assert plant.ok("get MA2.SET") == "0"  # the other unit's map is its own
    assert plant.ok("get MA2.COIL") == "0"
    # The other bus, at its own speed and framing.
    c = serial_client(plant.b.host, 19200)
    try:
        r = c.read_holding_registers(0, 1, slave=1)
        assert not failed(r) and r.registers == [101]
    finally:
        c.close()
    st = plant.stats("ma1,ma2")["devices"]
    assert st["ma1"]["requests"] >= 4 and st["ma1"]["replies"] >= 4
    assert st["ma2"]["requests"] >= 3 and st["ma2"]["replies"] >= 3


def test_raw_frames_and_set(plant):
    line = plant.line_a
    reply = line.ask(read_req(3, 0, 2))
    assert good_reply(reply, 3, 3) and regs(reply) == [103, 0]
    assert plant.ok("set MA3.SET 77") == "77"
    reply = line.ask(write_req(3, 1, 78))
    assert reply == write_req(3, 1, 78)  # fc 6 echoes the request
    assert plant.ok("get MA3.SET") == "78"
    # A whole request arriving in two pieces close together is one frame.
    req = read_req(3, 0, 1)
    line.send(req[:3])
    time.sleep(0.005)
    line.send(req[3:], flush=False)
    assert good_reply(line.recv(1.0), 3, 3)
    # An unserved function code is answered with exception 1.
    reply = line.ask(frame(3, bytes([7])))
    assert good_reply(reply, 3, 0x87) and reply[2] == 1


def test_exception_mode(plant):
    plant.ok("exception ma4 6")
    try:
        reply = plant.line_a.ask(read_req(4, 0, 1))
        assert good_reply(reply, 4, 0x83) and reply[2] == 6
        c = serial_client(plant.a.host, 9600)
        try:
            r = c.read_holding_registers(0, 1, slave=4)
            assert failed(r) and r.exception_code == 6
        finally:
            c.close()
    finally:
        plant.ok("normal ma4")
    assert good_reply(plant.line_a.ask(read_req(4, 0, 1)), 4, 3)
    assert plant.stats("ma4")["devices"]["ma4"]["exceptions"] >= 2


def test_silent_unit_and_unknown_unit(plant):
    line = plant.line_a
    before = plant.stats("ma5")
    plant.ok("silent ma5")
    try:
        t0 = time.time()
        assert line.ask(read_req(5, 0, 1), timeout=QUIET) == b""  # times out
        assert time.time() - t0 >= QUIET - 0.01
        assert line.ask(read_req(9, 0, 1), timeout=QUIET) == b""  # nobody has unit 9
        assert line.ask(read_req(248, 0, 1), timeout=QUIET) == b""
        # The other units are not disturbed.
        assert good_reply(line.ask(read_req(6, 0, 1)), 6, 3)
    finally:
        plant.ok("normal ma5")
    assert good_reply(line.ask(read_req(5, 0, 1)), 5, 3)
    after = plant.stats("ma5")
    assert after["devices"]["ma5"]["ignored"] == before["devices"]["ma5"]["ignored"] + 1
    assert after["serial"]["a"]["unknown_unit"] == before["serial"]["a"]["unknown_unit"] + 2
    assert after["totals"]["unknown_unit"] >= 2


def test_bad_crc_and_garbage_are_counted_and_skipped(plant):
    line = plant.line_a
    before = plant.bus("a")
    # A bad CRC: never answered, counted once; the next good request is answered.
    bad = bytearray(read_req(6, 0, 1))
    bad[-1] ^= 0x5A
    assert line.ask(bytes(bad), timeout=QUIET) == b""
    assert good_reply(line.ask(read_req(6, 0, 1)), 6, 3)
    mid = plant.bus("a")
    assert mid["crc_errors"] == before["crc_errors"] + 1
    assert mid["garbage_bytes"] == before["garbage_bytes"] + len(bad)
    assert mid["frames"] == before["frames"] + 1

    # Random noise right before a request, in the same write: the request is
    # still found and answered (possibly after the line's quiet time).
    rng = random.Random(7)
    noise = bytes(rng.randrange(256) for _ in range(300))
    reply = line.ask(noise + read_req(6, 0, 1), timeout=1.0)
    assert good_reply(reply, 6, 3) and regs(reply) == [106]
    # An unfinished frame, then silence, then a request.
    line.send(read_req(6, 0, 1)[:5])
    assert line.recv(QUIET) == b""
    assert good_reply(line.ask(read_req(6, 0, 1)), 6, 3)
    after = plant.bus("a")
    assert after["garbage_bytes"] >= mid["garbage_bytes"] + len(noise) - 20
    assert after["garbage_bytes"] <= mid["garbage_bytes"] + len(noise) + 5
    assert after["crc_errors"] >= mid["crc_errors"] + 1
    assert plant.cmd("ping") == "ok pong"  # never fatal


def test_broadcast_applies_writes_without_answer(plant):
    line = plant.line_a
    before = plant.bus("a")["broadcasts"]
    assert line.ask(write_req(0, 1, 555), timeout=QUIET) == b""
    for u in (1, 2, 6):
        assert plant.ok("get MA%d.SET" % u) == "555"
    assert plant.bus("a")["broadcasts"] == before + 1


def test_delay_and_garbage_modes(plant):
    line = plant.line_b
    plant.ok("delay mb1 300")
    try:
        t0 = time.time()
        reply = line.ask(read_req(1, 0, 1), timeout=2)
        assert good_reply(reply, 1, 3) and time.time() - t0 >= 0.29
    finally:
        plant.ok("normal mb1")
    before = plant.stats("mb1")["devices"]["mb1"]["garbage"]
    plant.ok("garbage mb1")
    try:
        for _ in range(5):
            reply = line.ask(read_req(1, 0, 1), timeout=QUIET)
            assert not (good_reply(reply, 1, 3) and len(reply) == 7 and reply[2] == 2)
    finally:
        plant.ok("normal mb1")
    assert plant.stats("mb1")["devices"]["mb1"]["garbage"] == before + 5
    assert good_reply(line.ask(read_req(1, 0, 1)), 1, 3)


def test_refuse_closes_port_normal_reopens_disconnect_cycles(plant):
    line = plant.line_b
    assert plant.holds(plant.b.dev)
    opens = plant.bus("b")["opens"]
    plant.ok("refuse mb1")  # the only unit of bus b
    try:
        wait_for(lambda: not plant.holds(plant.b.dev), 2, "port still open after refuse")
        st = plant.stats("mb1")
        assert st["serial"]["b"]["open"] is False and st["devices"]["mb1"]["listening"] is False
        assert line.ask(read_req(1, 0, 1), timeout=QUIET) == b""  # nobody reads the line
    finally:
        plant.ok("normal mb1")
    assert plant.holds(plant.b.dev)
    # The request sent while the port was closed is not answered late.
    assert line.recv(QUIET) == b""
    assert good_reply(line.ask(read_req(1, 0, 1)), 1, 3)
    assert plant.ok("disconnect mb1") == "1"
    assert plant.holds(plant.b.dev)
    assert good_reply(line.ask(read_req(1, 0, 1)), 1, 3)
    assert plant.bus("b")["opens"] == opens + 2
    # On a shared bus, refusing one unit makes it absent; the port stays open.
    plant.ok("refuse ma6")
    try:
        assert plant.holds(plant.a.dev)
        assert plant.line_a.ask(read_req(6, 0, 1), timeout=QUIET) == b""
        assert good_reply(plant.line_a.ask(read_req(1, 0, 1)), 1, 3)
    finally:
        plant.ok("normal ma6")
    assert good_reply(plant.line_a.ask(read_req(6, 0, 1)), 6, 3)


def test_port_appears_later_and_survives_far_end_restart(devsim_bin, free_ports, tmp_path):
    bus = Bus(tmp_path, "late")
    notatty = tmp_path / "plain-file"
    notatty.write_text("")
    control = "tcp://127.0.0.1:%d" % free_ports(1)
    # The site names the I/O server's end of the pair, as the I/O server reads
    # it; devsim is given the other end with --serial.
    site = write_site(tmp_path / "site.yaml", control, [
        serial_channel("late", bus.host, [device("ml1", 1), device("ml2", 2)], 19200, "O", 2),
        serial_channel("file", str(notatty), [device("mf1", 1)], 9600),
    ])
    log = open(tmp_path / "devsim.log", "wb")
    ds = Devsim(devsim_bin, site, control, log, extra=["--serial", "late=" + bus.dev])
    try:
        # A path that is not a terminal is not a serial line here: skipped.
        assert "not serve" in ds.cmd("get MF1.CONST")
        assert "not served" in ds.cmd("silent mf1")
        assert set(ds.stats()["serial"]) == {"late"}
        assert ds.bus("late")["open"] is False  # no pty yet: retried every second
        assert ds.bus("late")["port"] == bus.dev
        bus.start()
        wait_for(lambda: ds.bus("late")["open"], 3, "port not opened after it appeared")
        line = Line(bus.host)
        try:
            assert good_reply(line.ask(read_req(2, 0, 1)), 2, 3)
        finally:
            line.close()
        fd = os.open(bus.dev, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        cflag = termios.tcgetattr(fd)[2]
        os.close(fd)
        assert cflag & termios.PARODD and cflag & termios.CSTOPB  # PARENB: see above
        assert ds.bus("late")["framing"] == "8O2" and ds.bus("late")["line"] == "8N2"
        # The far end goes away: the port is closed, not spun on; then it comes back.
        bus.stop()
        wait_for(lambda: not ds.bus("late")["open"], 3, "port still open after hangup")
        assert ds.cmd("ping") == "ok pong"
        bus.start()
        wait_for(lambda: ds.bus("late")["open"], 3, "port not reopened")
        line = Line(bus.host)
        try:
            assert good_reply(line.ask(read_req(1, 0, 1)), 1, 3)
        finally:
            line.close()
        assert ds.bus("late")["opens"] == 2
    finally:
        rc = ds.stop()
        bus.stop()
        log.close()
    assert rc == 0
    text = (tmp_path / "devsim.log").read_text()
    assert "not a serial port" in text and "cannot open" in text


def test_bad_serial_option_exits_2(devsim_bin, tmp_path):
    site = write_site(tmp_path / "site.yaml", "tcp://127.0.0.1:1", [
        serial_channel("bus", str(tmp_path / "nowhere"), [device("m1", 1)], 9600),
        {"name": "net", "type": "network", "devices": [
            {"name": "d1", "address": "127.0.0.1:1", "servers": [{"ioserver": "io1", "priority": 1}],
             "tags": [{"name": "D1.V", "address": "hr:0"}]}]},
    ])
    for args, why in ((["--serial", "nosuch=/tmp/x"], b"no serial channel"),
                      (["--serial", "net=/tmp/x"], b"no serial channel"),
                      (["--serial", "bus"], b"CHANNEL=PATH"),
                      (["--serial", "bus="], b"CHANNEL=PATH"),
                      (["--serial", "bus=/a", "--serial", "bus=/b"], b"twice")):
        r = subprocess.run([devsim_bin, "--config", str(site), *args], capture_output=True,
                           timeout=10)
        assert r.returncode == 2 and why in r.stderr, (args, r.returncode, r.stderr)
