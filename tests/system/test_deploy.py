"""make run (deploy/run.sh), the demo site file, scadactl ping and --check.

The demo plant runs here on free ports: the test copies deploy/sites/demo.yaml
with every port moved into a free range, so it never meets a `make run` or a
compose stack that may be running on the demo's own ports.
"""
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

import scada_helpers as H
from scada_helpers import ROOT, wait_until

DEMO = os.path.join(ROOT, "deploy", "sites", "demo.yaml")
RUN = os.path.join(ROOT, "deploy", "run.sh")


def _moved_demo(tmp_path, free_ports):
    """demo.yaml with every port (the ${X:-port} defaults and the device
    ports) mapped into a free range; returns (path, ports by old port)."""
    text = open(DEMO).read()
    found = sorted({int(p) for p in re.findall(r"(?<=[:-])(\d{4,5})(?=[}\s\"])", text)
                    if 1024 < int(p) < 65536})
    moved = {old: free_ports(1) for old in found}
    out = re.sub(r"(?<=[:-])(\d{4,5})(?=[}\s\"])",
                 lambda m: str(moved.get(int(m.group(1)), m.group(1))), text)
    path = tmp_path / "demo.yaml"
    path.write_text(out)
    return str(path), moved


class RunSh:
    """deploy/run.sh in its own session, as on a terminal (Ctrl-C = SIGINT to
    the whole process group)."""

    def __init__(self, tmp_path, site, env):
        self.out_path = tmp_path / "run.out"
        self.out = open(self.out_path, "w")
        self.proc = subprocess.Popen(["bash", RUN, site], stdout=self.out,
                                     stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True, cwd=ROOT)

    def text(self):
        return self.out_path.read_text(errors="replace")

    def interrupt(self, timeout=20):
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(timeout=timeout)

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        self.out.close()


def _pids(pattern):
    r = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return [int(p) for p in r.stdout.split()]


@pytest.fixture
def demo_run(tmp_path, free_ports, bin_dir):
    if bin_dir != os.path.join(ROOT, "build", "bin"):
        pytest.skip("run.sh runs build/bin")
    site, moved = _moved_demo(tmp_path, free_ports)
    name = "rt%d" % (os.getpid() % 100000)
    env = dict(os.environ, SITE_NAME=name, SIM="1", RUN_SECONDS="300",
               SCADA_KEYS=str(tmp_path / "keys"),
               IOLOG_DIR=str(tmp_path / "iolog"), ALARM_DIR=str(tmp_path),
               PAGE="PLC01.LEVEL PLC03.PRESSURE RTU001.PRESSURE RTU002.PRESSURE "
                    "RTU016.PRESSURE L7.RTU1.LEVEL")
    runs = []

    def start():
        r = RunSh(tmp_path, site, env)
        runs.append(r)
        return r

    yield start, site, name, env, moved
    for r in runs:
        r.stop()
    for pid in _pids(site):
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(os.path.join(ROOT, "build", "run", name), ignore_errors=True)


@pytest.fixture
def env(tmp_path, bin_dir, free_ports):
    e = H.Env(tmp_path, bin_dir, free_ports)
    try:
        yield e
    finally:
        errors = e.cleanup()
        assert not errors, errors


def _ctl(bin_dir, site, env, *args, timeout=20):
    return subprocess.run([os.path.join(bin_dir, "scadactl"), "--config", site, *args],
                          capture_output=True, text=True, env=env, timeout=timeout)


def test_make_run_demo_plant_restart_and_ctrl_c(demo_run, bin_dir):
    """The whole demo plant under run.sh: every process answers, values and
    the alarm counts stream, a dead outstation is bad-no-comm, logs carry
    the process name, a killed service is restarted and the restart logged,
    and Ctrl-C leaves no process behind."""
    start, site, name, env, moved = demo_run
    run = start()
    logs = os.path.join(ROOT, "build", "run", name, "logs")
    wait_until(lambda: re.search(r"^PLC01\.LEVEL \S+ good ", run.text(), re.M), 60,
               interval=0.5, what="PLC01.LEVEL good on the live page")
    r = _ctl(bin_dir, site, env, "ping", "io1", "io2", "b1", "resolver", "alarm", "devsim")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("alive") == 6
    wait_until(lambda: re.search(r"^RTU016\.PRESSURE - bad-no-comm", run.text(), re.M), 30,
               interval=0.5, what="the dead outstation rtu016 bad-no-comm")
    wait_until(lambda: re.search(r"^# alarms: \d+ in the list", run.text(), re.M), 30,
               interval=0.5, what="the alarm counts under the page")
    # Both I/O servers work: RTU002 is io2's (odd outstations are io1's).
    wait_until(lambda: re.search(r"^RTU002\.PRESSURE \S+ good ", run.text(), re.M), 30,
               interval=0.5, what="RTU002.PRESSURE (io2's) good")
    # The overview stays an overview: 10 devices not online per I/O server,
    # then a count (the demo has 26 at each).
    wait_until(lambda: re.search(r"^  \.\.\. and \d+ more not online",
                                 _ctl(bin_dir, site, env, "status").stdout, re.M), 20,
               interval=1, what="status: the rest of the devices not online counted")
    out = _ctl(bin_dir, site, env, "status").stdout
    io1 = out.split("ioserver io1")[1].split("ioserver io2")[0]
    assert len(re.findall(r"^  (rtu|plc|l7rtu)\S+ ", io1, re.M)) == 10, io1
    more = int(re.search(r"and (\d+) more not online", io1).group(1))
    counts = re.search(r"devices: (\d+) online, (\d+) offline, (\d+) queued, (\d+) connecting, "
                       r"(\d+) failed", io1)
    assert 10 + more == sum(int(x) for x in counts.groups()[1:]), io1
    site_log = open(os.path.join(logs, "site.log")).read()
    for proc in ("devsim", "resolver", "io1", "io2", "b1", "alarm", "redis"):
        assert re.search(r"^%-8s\| " % proc, site_log, re.M), proc + " not prefixed in site.log"

    # A crash: kill -9 io1; it is restarted and the restart is logged.
    old = [p for p in _pids(site) if "--name io1" in open("/proc/%d/cmdline" % p).read()
           .replace("\0", " ")]
    assert len(old) == 1, old
    os.kill(old[0], signal.SIGKILL)
    wait_until(lambda: os.path.exists(os.path.join(logs, "run.log")) and
               re.search(r"io1 \(pid %d\) exited with status 137: restarting" % old[0],
                         open(os.path.join(logs, "run.log")).read()), 10,
               interval=0.2, what="the restart of io1 in run.log")
    wait_until(lambda: _ctl(bin_dir, site, env, "--timeout", "500", "ping", "io1").returncode == 0,
               20, interval=0.5, what="io1 answering again")
    assert "restarting in 1 s" in open(os.path.join(logs, "io1.log")).read()

    # Ctrl-C: everything stops, nothing is left.
    rc = run.interrupt()
    assert rc == 0, run.text()[-2000:]
    assert "run: stopped" in run.text()
    wait_until(lambda: not _pids(site), 5, what="no process of the site left: %s" % [
        open("/proc/%d/cmdline" % p).read().replace("\0", " ") for p in _pids(site)])
    redis_port = moved[16379]
    r = subprocess.run(["redis-cli", "-p", str(redis_port), "ping"], capture_output=True,
                       text=True)
    assert "PONG" not in r.stdout, "the private redis-server is still running"


def test_make_run_bad_site_file_stops_before_starting(tmp_path, bin_dir):
    """A site file with an error: run.sh says where and exits 2 at once,
    with nothing started (no restart loop of processes that cannot start)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(open(DEMO).read().replace("type: float32, sim: sine,", "type: flaot32, sim: sine,", 1))
    r = subprocess.run(["bash", RUN, str(bad)], capture_output=True, text=True, timeout=30,
                       cwd=ROOT)
    assert r.returncode == 2, r.stdout + r.stderr
    assert re.search(r"bad\.yaml:\d+: channels\[0\]\.devices\[0\]\.tags\[0\]\.type", r.stderr), \
        r.stderr
    assert not _pids(str(bad))


def test_demo_generated_part_matches_its_generator(tmp_path):
    """deploy/sites/demo.yaml's field part is what gen-field.py makes."""
    copy = tmp_path / "demo.yaml"
    shutil.copy(DEMO, copy)
    subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "deploy", "sites", "gen-field.py"),
                    str(copy)], check=True)
    assert copy.read_text() == open(DEMO).read(), \
        "demo.yaml is out of date: run /usr/bin/python3 deploy/sites/gen-field.py"


def test_demo_site_loads_with_and_without_compose_environment(bin_dir, tmp_path):
    """The one demo file loads as make run reads it (defaults) and as the
    containers read it (host names and ports from the environment); it is a
    CURVE site, so it needs its certificates first."""
    tool = os.path.join(bin_dir, "scada-resolver")
    keys = dict(os.environ, SCADA_KEYS=str(tmp_path / "keys"))
    r = subprocess.run([tool, "--config", DEMO, "--check"], capture_output=True, text=True,
                       env=keys)
    assert r.returncode == 2 and "no key directory" in r.stderr, r.stderr
    r = subprocess.run([os.path.join(bin_dir, "scadactl"), "--config", DEMO, "keygen"],
                       capture_output=True, text=True, env=keys)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([tool, "--config", DEMO, "--check"], capture_output=True, text=True,
                       env=keys)
    assert r.returncode == 0, r.stderr
    assert "site demo is good" in r.stdout and "1532 tags" in r.stdout, r.stdout
    env = dict(keys, SITE_NAME="east", REDIS_HOST="redis", IO1_HOST="io1",
               IO2_HOST="io2", PLANT_HOST="devsim", B1_PORT="5710")
    r = subprocess.run([tool, "--config", DEMO, "--check"], capture_output=True, text=True,
                       env=env)
    assert r.returncode == 0, r.stderr
    assert "site east is good" in r.stdout


def test_check_option_reports_a_bad_name_and_a_bad_file(tmp_path, bin_dir):
    r = subprocess.run([os.path.join(bin_dir, "scada-ioserver"), "--config", DEMO, "--name",
                        "io9", "--check"], capture_output=True, text=True,
                       env=dict(os.environ, SCADA_KEYS=str(tmp_path / "none")))
    assert r.returncode == 2 and "io9" in r.stderr, r.stderr
    r = subprocess.run([os.path.join(bin_dir, "scada-broker"), "--config",
                        str(tmp_path / "missing.yaml"), "--check"], capture_output=True, text=True)
    assert r.returncode == 2 and "missing.yaml" in r.stderr, r.stderr


def test_scadactl_ping_alive_dead_and_unknown(env):
    """ping: 0 when every named process answers, 1 (and which one) when one
    does not, 2 for a name the site does not have."""
    env.start_redis()
    top = env.pubsub_top()
    io = env.ioserver_cfg()
    site = env.site([io], [], **top)
    env.start_resolver(site, top["resolver"]["endpoint"])
    r = env.scadactl(site, "ping", "resolver")
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^resolver \(resolver at tcp://127\.0\.0\.1:\d+\): alive", r.stdout, re.M)
    r = env.scadactl(site, "--timeout", "300", "ping", "resolver", "io1", "b1")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "io1 (ioserver): NOT ANSWERING" in r.stdout
    assert "b1 (broker): NOT ANSWERING" in r.stdout
    r = env.scadactl(site, "--json", "--timeout", "300", "ping", "resolver", "io1")
    assert '"resolver": {"kind": "resolver", "alive": true' in r.stdout
    assert '"io1": {"kind": "ioserver", "alive": false' in r.stdout
    r = env.scadactl(site, "ping", "nosuch")
    assert r.returncode == 2 and "no process \"nosuch\"" in r.stderr, r.stderr
    r = env.scadactl(site, "ping")
    assert r.returncode == 2
