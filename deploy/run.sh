#!/usr/bin/env bash
# make run: start a site as local processes and show it working.
#
#   deploy/run.sh                 the demo site: private redis-server, simulated
#                                 plant (two devices silent), resolver, I/O
#                                 servers io1 (primary) and io2 (standby), broker,
#                                 alarm service
#   deploy/run.sh path/site.yaml  a site of your own (no simulator unless SIM=1)
#
# Everything runs under build/run/<site>/: logs, the Redis data directory.
# Ctrl-C stops it all.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
bin=$here/build/bin
site_file=${1:-}
demo=0
if [ -z "$site_file" ]; then
  site_file=$here/deploy/sites/demo.yaml
  demo=1
fi
[ -f "$site_file" ] || { echo "run: no site file $site_file" >&2; exit 2; }
site_file=$(cd "$(dirname "$site_file")" && pwd)/$(basename "$site_file")

# Names we need from the site file (validated again by every binary).
eval "$(/usr/bin/python3 - "$site_file" <<'PY'
import sys, yaml
s = yaml.safe_load(open(sys.argv[1]))
r = s.get("redis") or {}
print("site=%s" % s.get("site", "site"))
print("redis_host=%s" % r.get("host", "127.0.0.1"))
print("redis_port=%s" % r.get("port", 6379))
print("ioservers='%s'" % " ".join(i["name"] for i in s.get("ioservers", [])))
print("brokers='%s'" % " ".join(b["name"] for b in (s.get("brokers") or [{"name": "b1"}])))
tags = [t["name"] for c in s.get("channels", []) for d in c.get("devices") or []
        for t in (d.get("tags") or [])]
print("page='%s'" % " ".join(tags[:16]))
PY
)"
run=$here/build/run/$site
mkdir -p "$run/logs" "$run/redis"
pids=()

stop() {
  trap - INT TERM
  echo
  echo "run: stopping"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  sleep 1
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
  echo "run: stopped; logs in $run/logs"
  exit 0
}
trap stop INT TERM

# A service that is started again when it dies (not when run.sh stops it);
# every restart is logged in the service's log and in run.log.
supervise() { # name, command...
  local name=$1; shift
  (
    child=0
    trap 'kill -TERM $child 2>/dev/null; wait $child 2>/dev/null; exit 0' TERM INT
    while true; do
      "$@" >>"$run/logs/$name.log" 2>&1 &
      child=$!
      wait $child
      rc=$?
      msg="$(date -u +%Y-%m-%dT%H:%M:%S) run: $name (pid $child) exited with status $rc: restarting in 1 s"
      echo "$msg" >>"$run/logs/$name.log"
      echo "$msg" >>"$run/logs/run.log"
      sleep 1
    done
  ) &
  pids+=($!)
  echo "run: started $name (restarted if it dies), log $run/logs/$name.log"
}

start() { # name, command...
  local name=$1; shift
  "$@" >>"$run/logs/$name.log" 2>&1 &
  pids+=($!)
  echo "run: started $name (pid $!), log $run/logs/$name.log"
}

# A private redis-server unless one already answers on the site's port.
if ! redis-cli -h "$redis_host" -p "$redis_port" ping >/dev/null 2>&1; then
  start redis redis-server --port "$redis_port" --bind "$redis_host" --dir "$run/redis" \
    --save "" --appendonly no --daemonize no
  for _ in $(seq 50); do redis-cli -h "$redis_host" -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

if [ "$demo" = 1 ] || [ "${SIM:-0}" = 1 ]; then
  start devsim "$bin/scada-devsim" --config "$site_file"
  sleep 0.5
fi
supervise resolver "$bin/scada-resolver" --config "$site_file"
for io in $ioservers; do
  supervise "$io" "$bin/scada-ioserver" --config "$site_file" --name "$io"
done
for b in $brokers; do
  supervise "$b" "$bin/scada-broker" --config "$site_file" --name "$b"
done
supervise alarm "$bin/scada-alarm" --config "$site_file"

if [ "$demo" = 1 ]; then
  # Two devices stop answering, as dead field devices do.
  sleep 1
  /usr/bin/python3 - <<'PY' || true
import zmq
ctx = zmq.Context()
s = ctx.socket(zmq.REQ); s.setsockopt(zmq.RCVTIMEO, 2000); s.setsockopt(zmq.LINGER, 0)
s.connect("tcp://127.0.0.1:5590")
for dev in ("plc11", "plc12"):
    s.send_string("silent %s" % dev); print("run: devsim: silent %s: %s" % (dev, s.recv_string()))
PY
fi

echo "run: Ctrl-C stops everything"
sleep 2
# The site overview, and a page of tags read through the broker (only
# subscribed tags are polled: this page is what io1 polls).
while true; do
  clear 2>/dev/null || true
  "$bin/scadactl" --config "$site_file" status
  echo
  echo "a page through the broker (scadactl --config $site_file get ...):"
  # shellcheck disable=SC2086
  "$bin/scadactl" --config "$site_file" --timeout 2000 get $page
  echo
  echo "alarms (scadactl --config $site_file alarms; ack ID to acknowledge):"
  "$bin/scadactl" --config "$site_file" --timeout 2000 alarms | head -n 12
  if [ -s "$run/logs/run.log" ]; then
    echo
    echo "restarts (build/run/$site/logs/run.log):"
    tail -n 3 "$run/logs/run.log"
  fi
  sleep 3
done
