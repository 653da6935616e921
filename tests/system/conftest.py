"""Shared fixtures of the system tests: where the binaries are, free ports,
the Python protobuf code, and a test environment with its own redis-server.

The system tests start the real binaries on real sockets. They run beside
other things (other test runs, a `make run` demo), so they never use fixed
ports: they ask `free_ports` for a range nobody listens on.
"""
import os
import random
import shutil
import socket

import pytest

import scada_helpers as H

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


@pytest.fixture(scope="session")
def bin_dir():
    """build/bin of this checkout (BUILD=build/asan picks the sanitizer build)."""
    path = os.path.join(ROOT, os.environ.get("BUILD", "build"), "bin")
    if not os.path.isdir(path):
        pytest.skip("no %s: run make first" % path)
    return path


def _first_busy(base, count, host="127.0.0.1"):
    """Bind every port of [base, base+count) once; None when all were free,
    else the first port that was busy."""
    socks = []
    try:
        for port in range(base, base + count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            try:
                s.bind((host, port))
            except OSError:
                return port
        return None
    finally:
        for s in socks:
            s.close()


@pytest.fixture(scope="session")
def free_ports():
    """A function free_ports(count) -> base: `count` consecutive TCP ports on
    127.0.0.1 that were free a moment ago, never handed out twice in a session.
    Ports come from 20000..32767 (below Linux's ephemeral range, so outgoing
    connections do not take them meanwhile); the search starts at a random
    place and skips past each busy port, so it finds a gap when there is one."""
    lo, hi = 20000, 32768
    taken = []  # (base, count) already handed out
    rng = random.Random(os.getpid())

    def alloc(count=1):
        base = rng.randrange(lo, hi - count)
        scanned = 0
        while scanned < hi - lo:
            if base + count > hi:
                scanned += hi - base
                base = lo
                continue
            clash = [b + n for b, n in taken if base < b + n and b < base + count]
            busy = max(clash) - 1 if clash else _first_busy(base, count)
            if busy is None:
                taken.append((base, count))
                return base
            scanned += busy + 1 - base
            base = busy + 1
        raise RuntimeError("no %d free consecutive ports in %d..%d" % (count, lo, hi - 1))

    return alloc


def pytest_configure(config):
    """Markers of the system tests. `slow` tests run by default; deselect them
    with -m "not slow" for a quick run."""
    config.addinivalue_line("markers",
                            "slow: long-running (e.g. 1,000 silent devices); run by default")


@pytest.fixture(scope="session")
def pb(tmp_path_factory):
    """Python protobuf code generated from proto/scada.proto."""
    if not shutil.which("protoc"):
        pytest.skip("protoc (protobuf-compiler) is not installed")
    return H.load_proto(str(tmp_path_factory.mktemp("proto")))


@pytest.fixture
def env(pb, tmp_path, bin_dir, free_ports):
    """An Env with its own redis-server; at teardown every process it
    started is stopped and the tail of each one's log printed. Modules that
    need another set-up define their own `env`."""
    e = H.Env(tmp_path, bin_dir, free_ports)
    try:
        e.start_redis()
        yield e
    finally:
        procs = [o for o in e._owned if isinstance(o, H.Proc)]
        errors = e.cleanup()
        for p in procs:
            print("----- %s (%s)\n%s" % (p.name, p.log_path, p.log_tail(30)))
        assert not errors, errors
