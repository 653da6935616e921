"""Shared fixtures of the system tests: where the binaries are, and free ports.

The system tests start the real binaries on real sockets. They run beside
other things (other test runs, a `make run` demo), so they never use fixed
ports: they ask `free_ports` for a range nobody listens on.
"""
import os
import random
import socket

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


@pytest.fixture(scope="session")
def bin_dir():
    """build/bin of this checkout (BUILD=build/asan picks the sanitizer build)."""
    path = os.path.join(ROOT, os.environ.get("BUILD", "build"), "bin")
    if not os.path.isdir(path):
        pytest.skip("no %s: run make first" % path)
    return path


def _range_is_free(base, count, host="127.0.0.1"):
    """Bind every port of [base, base+count) once; True when all were free."""
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


@pytest.fixture(scope="session")
def free_ports():
    """A function free_ports(count) -> base: `count` consecutive TCP ports on
    127.0.0.1 that were free a moment ago, never handed out twice in a session.
    Ports come from 20000..32000 (below Linux's ephemeral range), so
    outgoing connections do not take them meanwhile."""
    taken = []  # (base, count) already handed out
    rng = random.Random(os.getpid())

    def alloc(count=1):
        for _ in range(200):
            base = rng.randrange(20000, 32000 - count)
            if any(base < b + n and b < base + count for b, n in taken):
                continue
            if _range_is_free(base, count):
                taken.append((base, count))
                return base
        raise RuntimeError("no %d free consecutive ports" % count)

    return alloc
