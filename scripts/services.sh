# Real services for the tests, on loopback only (sourced by .ci/run; usable by hand the same way):
#   source scripts/services.sh && services_start "$VENV" && trap services_stop EXIT
# - PostgreSQL from Debian's packages (installed with apt-get when missing): initdb / pg_ctl as the `postgres`
#   user into a temporary folder, on 127.0.0.1 and a free port, trust authentication (loopback only).
#   Exports RKDBENCH_TEST_POSTGRES_URI=postgresql+psycopg2://postgres@127.0.0.1:PORT/rkdbench_test.
# - A Ray head from the venv's `ray` (2 CPUs, 2 logical GPUs for the scheduling tests, usage stats off) on
#   127.0.0.1. Exports RKDBENCH_TEST_RAY_ADDRESS=127.0.0.1:PORT (not RAY_ADDRESS: that would silently turn
#   every local `ray.init()` into a connection to this head).
# - A single-node Slurm (slurm_start, also usable alone) from Debian's packages (`slurm-wlm`, `munge`; apt-get
#   installed when missing): its own munged (own key and socket), slurmctld and slurmd started directly (no
#   systemd), as root (or through `sudo -n`), on free ports, configured in a temporary folder; exports SLURM_CONF.
#   No accounting database: sacct needs slurmdbd on MySQL, and rkdbench's Slurm executor reads task states from
#   squeue (ended tasks stay listed for MinJobAge) and outcomes from the store and submitit's result files.
# services_stop ends only what services_start started (its pg_ctl data folder, the head's process group, the
# Slurm daemons by their pid files).

_services_free_port() {
  "$1" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

_services_pg_bin() {
  local found
  found="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [ -z "$found" ]; then
    local sudo=()
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then sudo=(sudo -n); fi
    echo "services: installing postgresql (apt-get)" >&2
    ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2 \
      || { ${sudo[@]+"${sudo[@]}"} apt-get update -q >&2 \
           && ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2; }
    found="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  fi
  echo "$found"
}

_services_as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

services_start() {
  local venv="$1" python="$1/bin/python" pg_bin port ray_port
  pg_bin="$(_services_pg_bin)"
  if [ -z "$pg_bin" ]; then echo "services: no PostgreSQL binaries after apt-get" >&2; return 1; fi
  SERVICES_PG_DIR="$(mktemp -d /tmp/rkdbench-pg.XXXXXX)"
  if [ "$(id -u)" -eq 0 ]; then chown postgres "$SERVICES_PG_DIR"; fi
  SERVICES_PG_BIN="$pg_bin"
  port="$(_services_free_port "$python")"
  _services_as_postgres "$pg_bin/initdb" -D "$SERVICES_PG_DIR/data" -U postgres -A trust >"$SERVICES_PG_DIR/initdb.log" 2>&1 \
    || { cat "$SERVICES_PG_DIR/initdb.log" >&2; return 1; }
  _services_as_postgres "$pg_bin/pg_ctl" -D "$SERVICES_PG_DIR/data" -l "$SERVICES_PG_DIR/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $SERVICES_PG_DIR" start >&2 \
    || { cat "$SERVICES_PG_DIR/server.log" >&2; return 1; }
  _services_as_postgres "$pg_bin/createdb" -h 127.0.0.1 -p "$port" -U postgres rkdbench_test
  export RKDBENCH_TEST_POSTGRES_URI="postgresql+psycopg2://postgres@127.0.0.1:$port/rkdbench_test"
  echo "services: PostgreSQL at 127.0.0.1:$port ($SERVICES_PG_DIR)" >&2

  ray_port="$(_services_free_port "$python")"
  # Ray's loopback mode (its switch for laptops): every Ray process of the head and of the tests' drivers on
  # 127.0.0.1, not on the machine's network address (Ray maps --node-ip-address 127.0.0.1 to that address)
  export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
  SERVICES_RAY_LOG="$SERVICES_PG_DIR/ray-head.log"
  # Ray's token authentication with a token of this head's own (not ~/.ray/auth_token, which other Ray
  # instances of the same user may replace); the tests' drivers inherit both variables.
  "$python" -c 'import secrets; print(secrets.token_hex(32), end="")' >"$SERVICES_PG_DIR/ray-token"
  export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$SERVICES_PG_DIR/ray-token"
  # --block keeps `ray start` in the foreground of its own process group: stopping that group stops this head
  # only, never another Ray instance on the machine (`ray stop` would stop them all).
  setsid "$venv/bin/ray" start --head --block --node-ip-address 127.0.0.1 --port "$ray_port" --num-cpus 2 \
    --num-gpus 2 --disable-usage-stats --include-dashboard false >"$SERVICES_RAY_LOG" 2>&1 &
  SERVICES_RAY_PID=$!
  local waited=0
  until grep -q "Ray runtime started" "$SERVICES_RAY_LOG" 2>/dev/null; do
    if ! kill -0 "$SERVICES_RAY_PID" 2>/dev/null || [ "$waited" -ge 180 ]; then
      cat "$SERVICES_RAY_LOG" >&2; echo "services: the Ray head did not start" >&2; return 1
    fi
    sleep 1; waited=$((waited + 1))
  done
  export RKDBENCH_TEST_RAY_ADDRESS="127.0.0.1:$ray_port"
  echo "services: Ray head at $RKDBENCH_TEST_RAY_ADDRESS (started in ${waited}s)" >&2
  slurm_start "$python"
}

_services_root() {
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then sudo -n "$@"; else "$@"; fi
}

# slurm_start [PYTHON]: a single-node Slurm whose one partition, `ci`, holds this machine (the node line from
# `slurmd -C`); returns once the node is idle. PYTHON (default python3) only picks free ports.
slurm_start() {
  local python="${1:-python3}" dir host node ctld_port slurmd_port waited=0
  if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    echo "services: installing slurm-wlm and munge (apt-get)" >&2
    _services_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >&2 \
      || { _services_root apt-get update -q >&2 \
           && _services_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >&2; } \
      || { echo "services: apt-get could not install slurm-wlm and munge" >&2; return 1; }
  fi
  dir="$(mktemp -d /tmp/rkdbench-slurm.XXXXXX)"
  SERVICES_SLURM_DIR="$dir"
  chmod 755 "$dir"
  mkdir -p "$dir/munge" "$dir/spool" "$dir/state"
  # munged of its own (key, socket, pid and log in $dir/munge), so a munged of the machine is left alone; the
  # Slurm daemons and clients find its socket through AuthInfo
  _services_root dd if=/dev/urandom bs=1 count=1024 of="$dir/munge/munge.key" status=none
  _services_root chown -R munge:munge "$dir/munge"
  _services_root chmod 755 "$dir/munge"  # munged wants its socket folder searchable by all
  _services_root chmod 400 "$dir/munge/munge.key"
  _services_root runuser -u munge -- /usr/sbin/munged --key-file "$dir/munge/munge.key" \
    --socket "$dir/munge/munge.socket" --pid-file "$dir/munge/munged.pid" --log-file "$dir/munge/munged.log" \
    --seed-file "$dir/munge/munged.seed" \
    || { _services_root cat "$dir/munge/munged.log" >&2; echo "services: munged did not start" >&2; return 1; }
  host="$(hostname -s)"
  node="$(slurmd -C | head -n 1)"
  ctld_port="$(_services_free_port "$python")"
  slurmd_port="$(_services_free_port "$python")"
  cat >"$dir/slurm.conf" <<CONF
ClusterName=rkdbench-ci
SlurmctldHost=$host
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
CredType=cred/munge
# cred_expire: also how long a requeued job waits before it may start again (default 120 s)
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=5
SlurmUser=root
ProctrackType=proctrack/pgid
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/backfill
# a requeued task starts within seconds of becoming eligible (defaults: 60 s and 30 s)
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
MailProg=/bin/true
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.txt
# seconds between SIGTERM and SIGKILL when a job ends (default 30): short, the tests cancel and requeue
KillWait=5
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmdSpoolDir=$dir/spool
StateSaveLocation=$dir/state
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
$node State=UNKNOWN
PartitionName=ci Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF="$dir/slurm.conf"
  _services_root env SLURM_CONF="$SLURM_CONF" slurmctld -f "$SLURM_CONF" \
    || { cat "$dir/slurmctld.log" >&2; echo "services: slurmctld did not start" >&2; return 1; }
  _services_root env SLURM_CONF="$SLURM_CONF" slurmd -f "$SLURM_CONF" \
    || { cat "$dir/slurmd.log" >&2; echo "services: slurmd did not start" >&2; return 1; }
  until [ "$(sinfo -h -o %t 2>/dev/null)" = "idle" ]; do
    if [ "$waited" -ge 60 ]; then
      sinfo >&2 || true; tail -n 20 "$dir/slurmctld.log" "$dir/slurmd.log" >&2
      echo "services: the Slurm node is not idle after 60s" >&2; return 1
    fi
    sleep 1; waited=$((waited + 1))
  done
  echo "services: Slurm (partition ci, $(echo "$node" | grep -o 'CPUs=[0-9]*')) with SLURM_CONF=$SLURM_CONF (idle in ${waited}s)" >&2
}

# slurm_stop: slurmd, slurmctld and munged of slurm_start, by their pid files; removes the folder
slurm_stop() {
  local dir="${SERVICES_SLURM_DIR:-}" pidfile pid
  [ -n "$dir" ] && [ -d "$dir" ] || return 0
  # jobs left by an interrupted test: their processes are slurmstepd's children, not the daemons'
  if SLURM_CONF="$dir/slurm.conf" timeout 10 scancel --partition ci 2>/dev/null; then
    for _ in $(seq 20); do
      [ -z "$(SLURM_CONF="$dir/slurm.conf" timeout 10 squeue -h -t RUNNING,COMPLETING -o %i 2>/dev/null)" ] && break
      sleep 1
    done
  fi
  for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
    pid="$(_services_root cat "$pidfile" 2>/dev/null || true)"
    [ -n "$pid" ] || continue
    _services_root kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 30); do _services_root kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    _services_root kill -KILL "$pid" 2>/dev/null || true
  done
  _services_root rm -rf "$dir"
  SERVICES_SLURM_DIR=""
  unset SLURM_CONF
}

services_stop() {
  slurm_stop
  if [ -n "${SERVICES_RAY_PID:-}" ]; then
    kill -TERM -- "-$SERVICES_RAY_PID" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$SERVICES_RAY_PID" 2>/dev/null || break; sleep 1; done
    kill -KILL -- "-$SERVICES_RAY_PID" 2>/dev/null || true
    SERVICES_RAY_PID=""
  fi
  if [ -n "${SERVICES_PG_DIR:-}" ] && [ -d "$SERVICES_PG_DIR/data" ]; then
    _services_as_postgres "$SERVICES_PG_BIN/pg_ctl" -D "$SERVICES_PG_DIR/data" -m fast -w stop >&2 || true
    rm -rf "$SERVICES_PG_DIR"
    SERVICES_PG_DIR=""
  fi
}
