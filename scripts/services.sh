# Real services for the tests, on loopback only (sourced by .ci/run; usable by hand the same way):
#   source scripts/services.sh && services_start "$VENV" && trap services_stop EXIT
# - PostgreSQL from Debian's packages (installed with apt-get when missing): initdb / pg_ctl as the `postgres`
#   user into a temporary folder, on 127.0.0.1 and a free port, trust authentication (loopback only).
#   Exports RKDBENCH_TEST_POSTGRES_URI=postgresql+psycopg2://postgres@127.0.0.1:PORT/rkdbench_test.
# - A Ray head from the venv's `ray` (2 CPUs, 2 logical GPUs for the scheduling tests, usage stats off) on
#   127.0.0.1. Exports RKDBENCH_TEST_RAY_ADDRESS=127.0.0.1:PORT (not RAY_ADDRESS: that would silently turn
#   every local `ray.init()` into a connection to this head).
# services_stop ends only what services_start started (its pg_ctl data folder and the head's process group).

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
}

services_stop() {
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
