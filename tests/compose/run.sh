#!/usr/bin/env bash
# The compose test: the demo site in containers, from the real Dockerfile and
# docker-compose.yml, checked from outside as an operator would.
#
#   bash tests/compose/run.sh        (as root; make compose-test)
#
# It installs docker.io, docker-compose and debootstrap if missing, starts
# dockerd if none runs, makes the base image locally when no registry can be
# reached (tests/compose/base-image.sh), then: builds the images, brings the
# demo site up, waits for every container to be healthy, reads the state keys
# with redis-cli, reads values with scadactl from the host, kills the primary
# I/O server's container and checks that the standby takes over and the keys
# say so, crashes a process to see its restart policy at work, runs a second
# site beside the first, and tears everything down with its volumes. Every
# check is printed; the exit status is 1 if one failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
export DEBIAN_FRONTEND=noninteractive
log=$root/build/compose-test
mkdir -p "$log"

pass=0
fail=0
ok() { echo "compose-test: ok   $*"; pass=$((pass + 1)); }
bad() { echo "compose-test: FAIL $*"; fail=$((fail + 1)); }
check() { # description, command...: ok if the command succeeds
  local what=$1; shift
  if "$@" >>"$log/checks.log" 2>&1; then ok "$what"; else bad "$what"; fi
}
# Retry a command every 0.5 s until it succeeds or `secs` pass; prints the time.
until_ok() { # secs, command...
  local secs=$1; shift
  local start=$SECONDS t0
  t0=$(date +%s.%N)
  while ! "$@" >>"$log/checks.log" 2>&1; do
    if [ $((SECONDS - start)) -ge "$secs" ]; then return 1; fi
    sleep 0.5
  done
  waited=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { printf "%.1f", a - b }')
  return 0
}

# --- Tools ------------------------------------------------------------------
need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
if [ ${#need[@]} -gt 0 ]; then
  echo "compose-test: installing ${need[*]}"
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
    || { echo "compose-test: cannot install ${need[*]}"; exit 1; }
fi
if ! docker info >/dev/null 2>&1; then
  echo "compose-test: starting dockerd (log $log/dockerd.log)"
  setsid nohup dockerd >"$log/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { echo "compose-test: dockerd did not start"; tail -n 20 "$log/dockerd.log"; exit 1; }
fi
# Both front ends are supported; the test uses Debian's docker-compose, and
# the plugin too when this host has it.
composes=("docker-compose")
docker compose version >/dev/null 2>&1 && composes+=("docker compose")

bash tests/compose/base-image.sh || { echo "compose-test: no base image"; exit 1; }
make -s bins || exit 1
ctl=$root/build/bin/scadactl
site=$root/deploy/sites/demo.yaml

dc() { # env file, compose arguments...
  local env=$1; shift
  docker-compose --env-file "$env" "$@"
}
cid() { dc "$1" ps -q "$2"; }
health() { docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$1" 2>/dev/null; }
all_healthy() { # env file
  local c n=0
  for c in $(dc "$1" ps -q); do
    [ "$(health "$c")" = healthy ] || return 1
    n=$((n + 1))
  done
  [ "$n" -ge 7 ]
}
# scadactl and redis-cli from the host, with a site's ports.
with_env() { (set -a; . "$1"; set +a; export SCADA_KEYS="$root/${KEYS_DIR#./}"; shift; "$@"); }
good_value() { # env, tag: the tag reads good through the site's broker
  with_env "$1" "$ctl" --config "$site" --timeout 3000 get "$2" | grep -q " good "
}
rcli() { redis-cli -p "$1" "${@:2}"; }

cleanup() {
  for env in deploy/sites/demo.env deploy/sites/east.env; do
    dc "$env" down -v --remove-orphans >>"$log/compose.log" 2>&1
  done
}
trap cleanup EXIT

demo=deploy/sites/demo.env
east=deploy/sites/east.env
# redis-cli from outside authenticates with the site's password (REDISCLI_AUTH).
pw_demo=$(set -a; . $demo; echo "$REDIS_PASSWORD")
pw_east=$(set -a; . $east; echo "$REDIS_PASSWORD")
export REDISCLI_AUTH=$pw_demo

# --- The compose file, with both front ends ---------------------------------
for c in "${composes[@]}"; do
  check "'$c config' accepts docker-compose.yml with $demo" \
    bash -c "$c --env-file $demo config -q"
done

# --- Build and bring up -----------------------------------------------------
# --- CURVE certificates of both sites, made on the host (docs/deployment.md) ----
for env in $demo $east; do
  kd=$(set -a; . $env; echo "$root/${KEYS_DIR#./}")
  rm -rf "$kd"
  check "scadactl keygen makes the certificates of $(basename $env .env) in ${kd#$root/}" \
    bash -c "SCADA_KEYS=$kd $ctl --config $site keygen && chown -R 10001 $kd"
done

echo "compose-test: building the images (log $log/build.log)"
if dc $demo build >"$log/build.log" 2>&1; then
  ok "the Dockerfile builds on debian:bookworm-slim (build, redis and runtime stages)"
else
  bad "the Dockerfile builds"; tail -n 30 "$log/build.log"; exit 1
fi
check "the runtime image runs as the unprivileged user scada" \
  bash -c '[ "$(docker run --rm scada:latest id -un)" = scada ]'
check "the runtime image has no compiler" \
  bash -c '! docker run --rm scada:latest sh -c "command -v cc || command -v gcc"'

dc $demo up -d >"$log/up.log" 2>&1 || { bad "up"; cat "$log/up.log"; exit 1; }
if until_ok 180 all_healthy $demo; then
  ok "all 7 containers of site demo healthy after ${waited%.*} s ($(dc $demo ps --services | tr '\n' ' '))"
else
  bad "all containers healthy"; dc $demo ps; dc $demo logs --tail=20
fi

# --- Redis state keys, read from outside --------------------------------------
R=16379
check "redis-cli: without the site's password Redis refuses (NOAUTH)" \
  bash -c "env -u REDISCLI_AUTH redis-cli -p $R get x 2>&1 | grep -q NOAUTH"
check "redis-cli: scada:demo:ioserver:io1 is running with devices online" \
  bash -c "[ \"\$(redis-cli -p $R hget scada:demo:ioserver:io1 state)\" = running ] && [ \"\$(redis-cli -p $R hget scada:demo:ioserver:io1 devices_online)\" -gt 200 ]"
check "redis-cli: scada:demo:ioserver:io2 is running" \
  bash -c "[ \"\$(redis-cli -p $R hget scada:demo:ioserver:io2 state)\" = running ]"
check "redis-cli: the resolver sees io1 and io2 alive" \
  bash -c "[ \"\$(redis-cli -p $R hget scada:demo:resolver:ioservers io1)\" = alive ] && [ \"\$(redis-cli -p $R hget scada:demo:resolver:ioservers io2)\" = alive ]"
check "redis-cli: plc01's best offer is io1 (primary)" \
  bash -c "[ \"\$(redis-cli -p $R hget scada:demo:resolver:offers plc01)\" = io1 ]"
check "redis-cli: broker b1 and the alarm service have their keys" \
  bash -c "redis-cli -p $R exists scada:demo:broker:b1 | grep -qx 1 && redis-cli -p $R exists scada:demo:alarm | grep -qx 1"
check "redis-cli: every state key has a TTL (none says online forever)" \
  bash -c "for k in scada:demo:ioserver:io1 scada:demo:resolver scada:demo:broker:b1 scada:demo:alarm; do t=\$(redis-cli -p $R pttl \$k); [ \"\$t\" -gt 0 ] || { echo \"\$k pttl \$t\"; exit 1; }; done"
check "redis-cli: dead field devices are offline at io1 (rtu016 refused)" \
  bash -c "redis-cli -p $R hget scada:demo:ioserver:io1:device:rtu016 state | grep -qv online"

# --- Values through the broker, from the host -------------------------------------
if until_ok 30 good_value $demo PLC01.LEVEL; then
  ok "scadactl get PLC01.LEVEL from the host through b1: good"
else
  bad "scadactl get PLC01.LEVEL good"
fi
check "scadactl get RTU016.PRESSURE: bad-no-comm (a dead outstation is not shown good)" \
  bash -c "(set -a; . $demo; set +a; export SCADA_KEYS=$root/\${KEYS_DIR#./}; $ctl --config $site get RTU016.PRESSURE) | grep -q bad-no-comm"
check "CURVE: a certificate of another site is refused by b1 (no value, exit 1)" \
  bash -c "! (set -a; . $demo; set +a; export SCADA_KEYS=$root/\${KEYS_DIR#./}; $ctl --config $site --timeout 1500 --cert $root/build/keys/east/scadactl.key get PLC01.LEVEL)"
check "a write from the host (engineer) is done, and audited in b1's volume and the Redis stream" \
  bash -c "(set -a; . $demo; set +a; export SCADA_KEYS=$root/\${KEYS_DIR#./}; $ctl --config $site --timeout 3000 write PLC01.PUMP2.RUN 1) && docker run --rm -v scada-demo_audit:/a scada:latest cat /a/audit-b1.log | grep -q '\"tag\":\"PLC01.PUMP2.RUN\".*\"result\":\"ok\"' && redis-cli -p $R xrevrange scada:demo:audit + - count 1 | grep -qx PLC01.PUMP2.RUN"
check "a viewer's write (default role) is refused and audited as refused" \
  bash -c "(set -a; . $demo; set +a; export SCADA_KEYS=$root/\${KEYS_DIR#./}; $ctl --config $site keygen vera >/dev/null && sleep 1.1 && ! $ctl --config $site --timeout 3000 --cert \$SCADA_KEYS/vera.key write PLC01.PUMP2.RUN 0) && redis-cli -p $R xrevrange scada:demo:audit + - count 1 | grep -qx refused"
check "scadactl status from the host shows the site overview" \
  bash -c "(set -a; . $demo; set +a; export SCADA_KEYS=$root/\${KEYS_DIR#./}; $ctl --config $site status) | grep -q 'ioserver io1 *running'"

# --- Kill the primary I/O server's container -----------------------------------
io1=$(cid $demo io1)
docker kill "$io1" >/dev/null
echo "compose-test: killed io1's container"
if until_ok 15 bash -c "[ \"\$(redis-cli -p $R hget scada:demo:resolver:offers plc01)\" = io2 ]"; then
  ok "after kill of io1: plc01's best offer in Redis is io2 within ${waited} s"
else
  bad "standby io2 takes plc01 over in Redis"
fi
if until_ok 15 good_value $demo PLC01.LEVEL; then
  ok "after kill of io1: PLC01.LEVEL good again through b1 (served by io2)"
else
  bad "PLC01.LEVEL good again after failover"
fi
if until_ok 10 bash -c "[ \"\$(redis-cli -p $R exists scada:demo:ioserver:io1)\" = 0 ]"; then
  ok "after kill of io1: its key scada:demo:ioserver:io1 expired (${waited} s): nothing says it runs"
else
  bad "io1's key expires after its container is killed"
fi
check "after kill of io1: the resolver says io1 is dead" \
  bash -c "[ \"\$(redis-cli -p $R hget scada:demo:resolver:ioservers io1)\" != alive ]"
if until_ok 15 bash -c "(set -a; . $demo; set +a; export SCADA_KEYS=$root/\${KEYS_DIR#./}; $ctl --config $site alarms) | grep -q 'io1.COMM.*active'"; then
  ok "after kill of io1: the alarm io1.COMM is active"
else
  bad "io1.COMM raised"
fi

# Back: the primary takes its devices again (fail-back).
t_start=$(date +%s.%N)
dc $demo start io1 >>"$log/compose.log" 2>&1
if until_ok 60 bash -c "[ \"\$(redis-cli -p $R hget scada:demo:resolver:offers plc01)\" = io1 ]"; then
  since=$(awk -v a="$(date +%s.%N)" -v b="$t_start" 'BEGIN { printf "%.1f", a - b }')
  ok "io1 started again: plc01 back on io1 ${since} s after 'start io1' was given"
else
  bad "fail-back to io1"
fi

# --- A crashed process is restarted by its restart policy -------------------------
b1=$(cid $demo b1)
pid=$(docker inspect -f '{{.State.Pid}}' "$b1")
restarts=$(docker inspect -f '{{.RestartCount}}' "$b1")
kill -9 "$pid"
if until_ok 30 bash -c "[ \$(docker inspect -f '{{.RestartCount}}' $b1) -gt $restarts ] && [ \"\$(docker inspect -f '{{.State.Status}}' $b1)\" = running ]"; then
  ok "b1's process killed (kill -9): restarted by its restart policy"
else
  bad "restart policy restarts b1"
fi
if until_ok 30 good_value $demo PLC03.PRESSURE; then
  ok "values flow through the restarted b1"
else
  bad "values after b1's restart"
fi

# --- A second site beside the first ------------------------------------------------
dc $east up -d >"$log/up-east.log" 2>&1 || bad "up of site east"
if until_ok 180 all_healthy $east; then
  ok "site east (deploy/sites/east.env) healthy beside demo: own project, network, volumes, ports"
else
  bad "site east healthy"; dc $east ps
fi
if until_ok 30 good_value $east PLC01.LEVEL; then
  ok "site east: values through its own broker (port 5710)"
else
  bad "site east values"
fi
check "site east keys are in its own Redis (scada:east:*), demo's Redis has none" \
  bash -c "[ \"\$(REDISCLI_AUTH=$pw_east redis-cli -p 16479 exists scada:east:ioserver:io1)\" = 1 ] && [ -z \"\$(redis-cli -p $R keys 'scada:east:*')\" ]"
check "site demo still serves while east runs" good_value $demo PLC01.LEVEL

# --- Persistence and volumes -----------------------------------------------------
check "the alarm journal is on its volume" \
  bash -c "docker run --rm -v scada-demo_alarm:/a scada:latest ls /a | grep -q alarms.journal"
check "Redis writes its append-only file on its volume" \
  bash -c "docker run --rm -v scada-demo_redis-data:/d scada:latest sh -c 'ls -R /d' | grep -q appendonly"

# --- Tear down ---------------------------------------------------------------------
for env in $demo $east; do
  dc "$env" down -v --remove-orphans >>"$log/compose.log" 2>&1
done
check "down -v removed every container and volume of both sites" \
  bash -c "[ -z \"\$(docker ps -aq --filter name=scada-demo --filter name=scada-east)\" ] && [ -z \"\$(docker volume ls -q | grep -E '^scada-(demo|east)_')\" ]"
trap - EXIT

echo "compose-test: $pass passed, $fail failed (details: $log/checks.log)"
[ "$fail" = 0 ]
