#!/usr/bin/env bash
# make run: start a site as local processes and show it working.
#
#   deploy/run.sh                 the demo site (deploy/sites/demo.yaml): a
#                                 private redis-server, the simulated plant,
#                                 resolver, I/O servers io1 and io2, broker,
#                                 alarm service; then a live page and the
#                                 alarm list (scadactl watch --alarms)
#   deploy/run.sh path/site.yaml  a site of your own; SIM=1 adds scada-devsim
#
# Environment: PAGE="TAG TAG ..." the tags to watch; RUN_SECONDS=N stop by
# itself after N seconds (for scripts and tests).
#
# Everything runs under build/run/<site>/: the Redis data directory and the
# logs, one per process (logs/<name>.log) and all of them together with each
# line prefixed by its process (logs/site.log). A service that dies is started
# again a second later, and the restart is logged. Ctrl-C stops everything.
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

# The whole file is checked first, the way every process reads it: a bad
# site file stops here with the file, line and key, not in a restart loop.
# A CURVE site without certificates gets them (scadactl keygen) first.
if ! check=$("$bin/scada-resolver" --config "$site_file" --check 2>&1); then
  case "$check" in
    *"scadactl --config"*keygen*)
      echo "run: making the site's CURVE certificates (scadactl keygen)"
      "$bin/scadactl" --config "$site_file" keygen >/dev/null || exit 2
      "$bin/scada-resolver" --config "$site_file" --check >/dev/null || exit 2 ;;
    *) echo "$check" >&2; exit 2 ;;
  esac
fi
# Names we need from the site file (${VAR:-default} expanded as the processes do).
eval "$(/usr/bin/python3 - "$site_file" <<'PY'
import os, re, sys, yaml
text = open(sys.argv[1]).read()
text = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}",
              lambda m: os.environ.get(m.group(1)) or (m.group(2) or ""), text)
s = yaml.safe_load(text)
r = s.get("redis") or {}
print("site=%s" % s.get("site", "site"))
print("redis_host=%s" % r.get("host", "127.0.0.1"))
print("redis_port=%s" % r.get("port", 6379))
print("ioservers='%s'" % " ".join(i["name"] for i in s.get("ioservers", [])))
print("brokers='%s'" % " ".join(b["name"] for b in (s.get("brokers") or [{"name": "b1"}])))
tags = [t["name"] for c in s.get("channels", []) for d in c.get("devices") or []
        for t in (d.get("tags") or [])]
print("first_tags='%s'" % " ".join(tags[:16]))
PY
)" || { echo "run: cannot read $site_file" >&2; exit 2; }
if [ "$demo" = 1 ]; then
  # A page across the plant: healthy PLCs, a silent one, outstations served
  # by io1 and by io2, a dead and a mute one, and the flapping leased line.
  page=${PAGE:-"PLC01.LEVEL PLC01.TEMP PLC03.PRESSURE PLC07.POWER_KW PLC11.LEVEL
    RTU001.PRESSURE RTU002.PRESSURE RTU003.FLOW RTU016.PRESSURE RTU023.PRESSURE
    L7.RTU1.LEVEL L7.RTU2.LEVEL"}
else
  page=${PAGE:-$first_tags}
fi
run=$here/build/run/$site
mkdir -p "$run/logs" "$run/redis" "$run/pids"
: >"$run/logs/site.log"
pids=()

say() { echo "$(date -u +%Y-%m-%dT%H:%M:%S) run: $*" | tee -a "$run/logs/run.log" >>"$run/logs/site.log"; }

stop() {
  trap - INT TERM
  echo
  echo "run: stopping"
  # The supervisors, and the services themselves (a supervisor between two
  # starts has none, and one killed by force must not leave its service).
  local all=("${pids[@]}")
  for f in "$run"/pids/*; do [ -f "$f" ] && all+=("$(cat "$f")"); done
  for p in "${all[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for _ in $(seq 30); do
    alive=0
    for p in "${all[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${all[@]}"; do kill -KILL "$p" 2>/dev/null; done
  rm -rf "$run/pids"
  wait 2>/dev/null
  say "stopped"
  echo "run: stopped; logs in $run/logs"
  exit 0
}
trap stop INT TERM

# Output of a process: to its own log, and prefixed with its name to site.log.
launch() { # name, command...: runs it in the background; $! is its pid
  local name=$1; shift
  "$@" > >(tee -a "$run/logs/$name.log" | sed -u "s/^/$(printf '%-8s' "$name")| /" >>"$run/logs/site.log") 2>&1 &
}

# A service that is started again when it dies (not when run.sh stops it).
supervise() { # name, command...
  local name=$1; shift
  (
    child=0
    trap 'kill -TERM $child 2>/dev/null; wait $child 2>/dev/null; exit 0' TERM INT
    while true; do
      launch "$name" "$@"
      child=$!
      echo "$child" >"$run/pids/$name"
      wait $child
      rc=$?
      if [ "$rc" = 2 ]; then
        # Bad usage or site file: starting it again would fail the same way.
        say "$name (pid $child) exited with status 2 (bad site file or usage): not restarted; see $run/logs/$name.log"
        exit 2
      fi
      say "$name (pid $child) exited with status $rc: restarting in 1 s"
      echo "$(date -u +%Y-%m-%dT%H:%M:%S) run: exited with status $rc: restarting in 1 s" >>"$run/logs/$name.log"
      sleep 1
    done
  ) &
  pids+=($!)
  echo "run: started $name (restarted if it dies), log $run/logs/$name.log"
}

# A private redis-server unless one already answers on the site's port.
if ! redis-cli -h "$redis_host" -p "$redis_port" ping >/dev/null 2>&1; then
  launch redis redis-server --port "$redis_port" --bind "$redis_host" --dir "$run/redis" \
    --save "" --appendonly no --daemonize no
  pids+=($!)
  echo "$!" >"$run/pids/redis"
  echo "run: started redis-server on $redis_host:$redis_port, log $run/logs/redis.log"
  for _ in $(seq 50); do redis-cli -h "$redis_host" -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

if [ "$demo" = 1 ] || [ "${SIM:-0}" = 1 ]; then
  supervise devsim "$bin/scada-devsim" --config "$site_file"
  for _ in $(seq 50); do "$bin/scadactl" --config "$site_file" --timeout 200 ping devsim >/dev/null 2>&1 && break; done
fi
supervise resolver "$bin/scada-resolver" --config "$site_file"
for io in $ioservers; do
  supervise "$io" "$bin/scada-ioserver" --config "$site_file" --name "$io"
done
for b in $brokers; do
  supervise "$b" "$bin/scada-broker" --config "$site_file" --name "$b"
done
supervise alarm "$bin/scada-alarm" --config "$site_file"
say "site $site up: ${#pids[@]} processes"

ctl() { "$bin/scadactl" --config "$site_file" "$@"; }
cat <<TXT
run: Ctrl-C stops everything. In another terminal:
       $bin/scadactl --config $site_file status
       $bin/scadactl --config $site_file alarms
       tail -f $run/logs/site.log
TXT
sleep 2
ctl status | head -n 40

# shellcheck disable=SC2086
if [ -t 1 ] && [ -z "${RUN_SECONDS:-}" ]; then
  sleep 3
  ctl watch --alarms $page
  stop
fi
# Not on a terminal (or RUN_SECONDS): the value stream and alarm counts as lines.
if [ -n "${RUN_SECONDS:-}" ]; then
  ctl watch --alarms --duration "$((RUN_SECONDS * 1000))" $page
else
  ctl watch --alarms $page
fi
stop
