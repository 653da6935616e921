"""Shared helpers of the benchmarks in bench/.

Nothing here is a test: the benchmarks start the real binaries, measure, and
print figures. Everything a benchmark starts is registered with `Procs` and
stopped at exit (also on Ctrl-C, SIGTERM or an exception), and every port is
picked free at run time, so a benchmark can run beside a `make run` demo or
the system tests.

Run with Debian's /usr/bin/python3 (pyzmq, protobuf, redis are installed
there).
"""
import atexit
import importlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import zmq

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BIN = os.path.join(ROOT, os.environ.get("BUILD", "build"), "bin")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def snapshot_bins(workdir, names):
    """Copy build/bin/NAME into workdir/bin so one run uses one build even if
    someone rebuilds meanwhile. Returns {name: path} and one line saying which
    build it is (git HEAD, and the binaries' modification time)."""
    d = os.path.join(workdir, "bin")
    os.makedirs(d, exist_ok=True)
    paths, newest = {}, 0
    for name in names:
        src = os.path.join(BIN, name)
        dst = os.path.join(d, name)
        shutil.copy2(src, dst)
        paths[name] = dst
        newest = max(newest, os.path.getmtime(src))
    try:
        head = subprocess.run(["git", "-C", ROOT, "log", "-1", "--format=%h"], text=True,
                              capture_output=True).stdout.strip() or "?"
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no",
                                "--", "services", "common", "proto"], text=True,
                               capture_output=True).stdout.strip()
    except OSError:
        head, dirty = "?", ""
    what = "build/bin of %s, built %s%s" % (
        head, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(newest)),
        " (working tree had uncommitted changes under services/common/proto)" if dirty else "")
    return paths, what


def log(fmt, *args):
    """Progress lines go to stderr, so stdout holds only the results."""
    sys.stderr.write("[%s] %s\n" % (time.strftime("%H:%M:%S"), fmt % args if args else fmt))
    sys.stderr.flush()


def on_signals_exit():
    """SIGTERM and SIGHUP raise SystemExit and SIGINT KeyboardInterrupt, so
    every finally block and atexit hook runs. SIGINT is set explicitly: a
    job started in the background by a non-interactive shell inherits it
    ignored, and would otherwise leave its processes (and iptables rule)."""
    def handler(signum, frame):
        raise SystemExit(128 + signum)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)


# ---------------------------------------------------------------- ports

_taken = []


def _range_is_free(base, count, host="127.0.0.1"):
    socks = []
    try:
        for port in range(base, base + count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        for s in socks:
            s.close()


def free_ports(count=1):
    """`count` consecutive TCP ports on 127.0.0.1 that were free a moment ago,
    from 20000..32000 (below Linux's ephemeral range, so outgoing connections
    do not take them meanwhile); never the same twice in one run."""
    rng = random.Random(os.getpid() ^ int(time.time()))
    for _ in range(500):
        base = rng.randrange(20000, 32000 - count)
        if any(base < b + n and b < base + count for b, n in _taken):
            continue
        if _range_is_free(base, count):
            _taken.append((base, count))
            return base
    raise RuntimeError("no %d free consecutive ports in 20000..32000" % count)


# ---------------------------------------------------------------- processes

class Procs:
    """The processes a benchmark started; all stopped at exit."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.procs = []
        atexit.register(self.stop_all)

    def start(self, name, argv, env=None):
        path = os.path.join(self.workdir, name + ".log")
        out = open(path, "ab")
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=env)
        out.close()
        p.bench_name = name
        p.bench_log = path
        self.procs.append(p)
        log("started %s (pid %d), log %s", name, p.pid, path)
        return p

    def stop(self, p, timeout=5):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self):
        for p in reversed(list(self.procs)):
            self.stop(p)

    def check_alive(self, *procs):
        for p in procs:
            if p.poll() is not None:
                tail = open(p.bench_log, errors="replace").read()[-3000:]
                raise RuntimeError("%s exited with %s; end of its log:\n%s"
                                   % (p.bench_name, p.returncode, tail))


def redis_server(procs, port):
    """A private redis-server (no persistence) on 127.0.0.1:port."""
    d = os.path.join(procs.workdir, "redis")
    os.makedirs(d, exist_ok=True)
    p = procs.start("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                              "--dir", d, "--save", "", "--appendonly", "no",
                              "--daemonize", "no", "--protected-mode", "no"])
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return p
        except OSError:
            procs.check_alive(p)
            time.sleep(0.1)
    raise RuntimeError("redis-server did not start on port %d" % port)


# ---------------------------------------------------------------- /proc

def proc_cpu_s(pid):
    """utime + stime of a process (all its threads), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime is field 14, stime field 15
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def proc_hwm_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def machine():
    """One line about this machine, for the figures' context."""
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%d cores (%s), Linux %s" % (os.cpu_count(), model, os.uname().release)


# ---------------------------------------------------------------- protobuf

_pb = None


def scada_pb2():
    """The Python classes of proto/scada.proto, generated with protoc into a
    temporary directory on first use."""
    global _pb
    if _pb is None:
        out = tempfile.mkdtemp(prefix="bench-pb-")
        atexit.register(shutil.rmtree, out, True)
        subprocess.run(["protoc", "--proto_path", os.path.join(ROOT, "proto"),
                        "--python_out", out, os.path.join(ROOT, "proto", "scada.proto")],
                       check=True)
        sys.path.insert(0, out)
        _pb = importlib.import_module("scada_pb2")
    return _pb


# ---------------------------------------------------------------- control sockets

class IoControl:
    """A DEALER on an I/O server's control endpoint: STATUS as a dict."""

    def __init__(self, ctx, endpoint):
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.next_id = 1

    def status(self, timeout_ms=5000):
        pb = scada_pb2()
        req = pb.IoRequest(id=self.next_id, kind=pb.IoRequest.STATUS)
        self.next_id += 1
        self.sock.send(req.SerializeToString())
        deadline = time.time() + timeout_ms / 1000.0
        while True:
            left = int((deadline - time.time()) * 1000)
            if left <= 0 or not self.sock.poll(left):
                raise TimeoutError("no STATUS reply from the I/O server")
            rep = pb.IoReply()
            rep.ParseFromString(self.sock.recv())
            if rep.id == req.id:
                if rep.status != pb.IoReply.OK:
                    raise RuntimeError("STATUS failed: %s" % rep.error)
                return json.loads(rep.status_json)

    def close(self):
        self.sock.close()


class DevsimControl:
    """A REQ on scada-devsim's control endpoint (text commands)."""

    def __init__(self, ctx, endpoint):
        self.ctx = ctx
        self.endpoint = endpoint
        self._open()

    def _open(self):
        self.sock = self.ctx.socket(zmq.REQ)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVTIMEO, 10000)
        self.sock.connect(self.endpoint)

    def cmd(self, text):
        self.sock.send_string(text)
        try:
            reply = self.sock.recv_string()
        except zmq.Again:
            self.sock.close()
            self._open()
            raise TimeoutError("devsim did not answer %r" % text)
        if not reply.startswith("ok"):
            raise RuntimeError("devsim: %s -> %s" % (text, reply))
        return reply[2:].strip()

    def close(self):
        self.sock.close()


def wait_for(what, predicate, timeout, interval=0.2, alive=None):
    """Poll predicate() until it returns something true; return that."""
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if alive:
            alive()
        if time.time() >= deadline:
            raise TimeoutError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(interval)


def table(rows, header):
    """A plain text table, columns sized to fit."""
    cols = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cols) for i in range(len(header))]
    lines = []
    for n, r in enumerate(cols):
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w)
                               for i, (c, w) in enumerate(zip(r, widths))).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
