"""Redis with a password: the services authenticate (password from a file
or a variable, never from the site file), a wrong password is refused with
one clear log line and no state written, and the password never shows in a
log. scadactl status authenticates the same way."""
import os
import time

import pytest

import scada_helpers as H
from scada_helpers import wait_until


@pytest.fixture
def env(tmp_path, bin_dir, free_ports):
    e = H.Env(tmp_path, bin_dir, free_ports)
    try:
        yield e
    finally:
        errors = e.cleanup()
        assert not errors, errors


def _site(env, name, redis_section, **top):
    io = env.ioserver_cfg("io1", always_scan=False)
    path = env.site([io], [], filename=name,
                    redis=dict({"host": "127.0.0.1", "port": env.redis.port}, **redis_section),
                    **top)
    return path, io


def test_services_authenticate_and_a_wrong_password_is_refused(env, tmp_path):
    password = "pw-%d-secret" % os.getpid()
    env.start_redis(password=password)
    (tmp_path / "good.pw").write_text(password + "\n")
    (tmp_path / "bad.pw").write_text("not-the-password\n")
    top = env.pubsub_top()
    good, io = _site(env, "good.yaml", {"password_file": "good.pw"}, **top)
    resolver = env.start_resolver(good, top["resolver"]["endpoint"])
    key = "scada:%s:resolver" % env.site_name
    wait_until(lambda: env.redis.client.exists(key), 10, what="the resolver's key, written "
               "after AUTH")
    assert env.redis.client.pttl(key) > 0
    r = env.scadactl(good, "status")
    assert r.returncode == 0, r.stderr
    assert "resolver" in r.stdout and "running" in r.stdout, r.stdout

    # The same stack with the wrong password: refused, said once, nothing written.
    bad, _ = _site(env, "bad.yaml", {"password_file": "bad.pw"}, **top)
    ios = env.start_ioserver(bad, io, ready=False)
    time.sleep(4.0)  # about four reconnects
    assert not env.redis.client.exists("scada:%s:ioserver:io1" % env.site_name)
    log = open(ios.log_path, errors="replace").read()
    assert log.count("refused AUTH") == 1, log
    assert "WRONGPASS" in log or "invalid password" in log, log
    r = env.scadactl(bad, "status")
    assert r.returncode == 1 and "refused AUTH" in r.stderr, r.stderr

    # A password from a variable works too (the compose deployment's way).
    os.environ["SCADA_T_REDIS_PW"] = password
    try:
        var, _ = _site(env, "var.yaml", {"password_env": "SCADA_T_REDIS_PW"}, **top)
        r = env.scadactl(var, "status")
        assert r.returncode == 0, r.stderr
    finally:
        del os.environ["SCADA_T_REDIS_PW"]

    # No log of any process holds the password.
    for p in (resolver, ios):
        assert password not in open(p.log_path, errors="replace").read()


def test_no_password_against_a_redis_that_wants_one(env):
    env.start_redis(password="needed")
    top = env.pubsub_top()
    site, _ = _site(env, "none.yaml", {}, **top)
    resolver = env.start_resolver(site, top["resolver"]["endpoint"])
    time.sleep(2.0)
    assert not env.redis.client.exists("scada:%s:resolver" % env.site_name)
    r = env.scadactl(site, "status")
    assert r.returncode == 1 and "NOAUTH" in r.stderr and "password_file" in r.stderr, r.stderr
    log = open(resolver.log_path).read()
    assert log.count("refused us") == 1 and "NOAUTH" in log, log
    # The resolver serves anyway: Redis is never in the data path.
    r = env.scadactl(site, "ping", "resolver")
    assert r.returncode == 0, r.stdout
    assert resolver.alive()
