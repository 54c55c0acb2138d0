#!/bin/bash
# Gateway throughput in requests per second, measured with wrk against
# the release backend and gateway on 127.0.0.1, next to nginx serving the
# same bytes from files on another loopback port. Three requests:
#   - the account statement CSV, a billing report the backend builds from
#     the ledger (GET /api/v1/statement.csv, 40 ledger rows);
#   - a small authenticated REST call (GET /api/v1/me);
#   - the public health check (GET /api/v1/health).
# civetweb closes each connection after its response, so nginx runs once
# the same way (keepalive_timeout 0) and once with keep-alive, its default.
# The script starts and stops every server itself. Needs `make`, wrk,
# nginx and curl (apt-get install wrk nginx curl).
#   bench/http_throughput.sh [SECONDS] [CONNECTIONS]   (default 10 64)
set -eu
cd "$(dirname "$0")/.."

build=${BUILD:-build}
seconds=${1:-10}
connections=${2:-64}
for tool in wrk nginx curl; do
    if ! command -v "$tool" >/dev/null; then
        echo "bench/http_throughput.sh: $tool is missing; apt-get install" \
             "wrk nginx curl" >&2
        exit 1
    fi
done
for p in backend gateway; do
    if [ ! -x "$build/bin/$p" ]; then
        echo "bench/http_throughput.sh: $build/bin/$p is missing; run make" >&2
        exit 1
    fi
done

dir=$(mktemp -d "${TMPDIR:-/tmp}/trainyard-bench-XXXXXX")
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

# Wait up to 20 s for a port file; print the port.
wait_port() {
    for _ in $(seq 200); do
        if [ -s "$1" ]; then
            cat "$1"
            return 0
        fi
        sleep 0.1
    done
    echo "bench/http_throughput.sh: no port in $1; logs in $dir" >&2
    return 1
}

json_field() {
    python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

mkdir -p "$dir/data" "$dir/ui" "$dir/www"
"$build/bin/backend" --data "$dir/data" --listen 127.0.0.1:0 \
    --port-file "$dir/backend.port" --log-level warn >"$dir/backend.log" 2>&1 &
pids+=($!)
backend_port=$(wait_port "$dir/backend.port")
admin_password=bench-admin-$RANDOM$RANDOM
TRAINYARD_ADMIN_PASSWORD=$admin_password "$build/bin/backend" create-admin \
    --data "$dir/data" admin@bench.local >>"$dir/backend.log" 2>&1
"$build/bin/gateway" --listen 127.0.0.1:0 --backend "127.0.0.1:$backend_port" \
    --secret "$dir/data/gateway.secret" --ui "$dir/ui" \
    --port-file "$dir/gateway.port" --log-level warn >"$dir/gateway.log" 2>&1 &
pids+=($!)
port=$(wait_port "$dir/gateway.port")
base=http://127.0.0.1:$port

# Sign in; print "COOKIE CSRF".
signin() {
    local headers body
    headers=$(mktemp "$dir/headers-XXXXXX")
    body=$(curl -sS -D "$headers" -H 'Content-Type: application/json' \
        -d "{\"email\":\"$1\",\"password\":\"$2\"}" "$base/api/v1/auth/signin")
    echo "$(sed -n 's/^[Ss]et-[Cc]ookie: \(ty_session=[^;]*\).*/\1/p' \
        "$headers") $(echo "$body" | json_field csrf)"
}

read -r admin_cookie admin_csrf <<<"$(signin admin@bench.local "$admin_password")"
user_password=bench-user-$RANDOM$RANDOM
user_id=$(curl -sS -H 'Content-Type: application/json' \
    -H "Cookie: $admin_cookie" -H "X-CSRF-Token: $admin_csrf" \
    -d "{\"email\":\"user@bench.local\",\"password\":\"$user_password\"}" \
    "$base/api/v1/admin/accounts" | json_field id)
for i in $(seq 40); do
    curl -sS -o /dev/null -H 'Content-Type: application/json' \
        -H "Cookie: $admin_cookie" -H "X-CSRF-Token: $admin_csrf" \
        -d "{\"amount\":$((i * 10000)),\"description\":\"bench credit $i\"}" \
        "$base/api/v1/admin/accounts/$user_id/credits"
done
read -r cookie _ <<<"$(signin user@bench.local "$user_password")"

# The same bytes for nginx.
curl -sS -f -H "Cookie: $cookie" -o "$dir/www/statement.csv" \
    "$base/api/v1/statement.csv"
curl -sS -f -H "Cookie: $cookie" -o "$dir/www/me.json" "$base/api/v1/me"
curl -sS -f -o "$dir/www/health.json" "$base/api/v1/health"
# nginx's workers run as an unprivileged user when it starts as root.
chmod a+rx "$dir" "$dir/www"
chmod a+r "$dir"/www/*

# nginx on a free loopback port, as the current user, without a daemon.
start_nginx() {
    local keepalive=$1 nginx_port
    nginx_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    mkdir -p "$dir/nginx-$keepalive"
    cat >"$dir/nginx-$keepalive/nginx.conf" <<EOF
worker_processes 2;
pid $dir/nginx-$keepalive/nginx.pid;
error_log $dir/nginx-$keepalive/error.log warn;
daemon off;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_timeout $keepalive;
    client_body_temp_path $dir/nginx-$keepalive;
    proxy_temp_path $dir/nginx-$keepalive;
    fastcgi_temp_path $dir/nginx-$keepalive;
    uwsgi_temp_path $dir/nginx-$keepalive;
    scgi_temp_path $dir/nginx-$keepalive;
    server {
        listen 127.0.0.1:$nginx_port;
        root $dir/www;
    }
}
EOF
    nginx -c "$dir/nginx-$keepalive/nginx.conf" -p "$dir/nginx-$keepalive" \
        2>>"$dir/nginx-$keepalive/error.log" &
    nginx_pid=$!
    pids+=("$nginx_pid")
    for _ in $(seq 100); do
        curl -sS -f -o /dev/null "http://127.0.0.1:$nginx_port/health.json" \
            2>/dev/null && break
        sleep 0.1
    done
    nginx_base=http://127.0.0.1:$nginx_port
}

# Run wrk; print the requests per second and the non-2xx count.
measure() {
    local out
    out=$(wrk -t2 -c"$connections" -d"${seconds}s" "$@")
    printf '%10s req/s  %s\n' \
        "$(echo "$out" | sed -n 's/^Requests\/sec: *//p')" \
        "$(echo "$out" | sed -n 's/^ *Non-2xx or 3xx responses: *\(.*\)/non-2xx: \1/p')"
}

echo "bench: wrk -t2 -c$connections -d${seconds}s, $(nproc) cores:" \
     "$(lscpu | sed -n 's/^Model name: *//p'), $(nginx -v 2>&1)," \
     "statement $(wc -c <"$dir/www/statement.csv") bytes"
printf '%-46s' "gateway statement.csv"
measure -H "Cookie: $cookie" "$base/api/v1/statement.csv"
printf '%-46s' "gateway /api/v1/me"
measure -H "Cookie: $cookie" "$base/api/v1/me"
printf '%-46s' "gateway /api/v1/health"
measure "$base/api/v1/health"
for keepalive in 0 75; do
    start_nginx "$keepalive"
    label="nginx, keepalive_timeout $keepalive"
    printf '%-46s' "$label statement.csv"
    measure "$nginx_base/statement.csv"
    printf '%-46s' "$label me.json"
    measure "$nginx_base/me.json"
    kill -TERM "$nginx_pid"
    wait "$nginx_pid" 2>/dev/null || true
done
