#!/bin/bash
# Start the backend and the gateway in the foreground and stop both on
# Ctrl-C. Settings come from the environment:
#   TRAINYARD_DATA          data folder (default ./var)
#   TRAINYARD_HOST          address for browsers (default 127.0.0.1)
#   TRAINYARD_PORT          port for browsers (default 8080)
#   TRAINYARD_BACKEND_PORT  backend port on loopback (default 8081)
set -u
cd "$(dirname "$0")/.."

build=${BUILD:-build}
data=${TRAINYARD_DATA:-var}
host=${TRAINYARD_HOST:-127.0.0.1}
port=${TRAINYARD_PORT:-8080}
backend_port=${TRAINYARD_BACKEND_PORT:-8081}
export TRAINYARD_DATA=$data

mkdir -p "$data"
rm -f "$data/backend.port" "$data/gateway.port"

# First start: an admin, a demo account and the sample data set. Later
# starts print the same sign-in details again.
credentials=$("$build/bin/backend" init-demo --data "$data") || {
    echo "run: the first-start setup failed; see the message above"
    exit 1
}

backend_pid=""
gateway_pid=""
stop() {
    trap - INT TERM
    echo "run: stopping"
    # The gateway first, so that it does not retry a stopped backend.
    if [ -n "$gateway_pid" ]; then
        kill -TERM "$gateway_pid" 2>/dev/null
        wait "$gateway_pid" 2>/dev/null
    fi
    [ -n "$backend_pid" ] && kill -TERM "$backend_pid" 2>/dev/null
    wait
    exit "${1:-0}"
}
trap 'stop 0' INT TERM HUP

# Wait until a program has written its port file, or has exited. The
# programs suggest --listen for a port in use, which make run does not
# take, so the hint names the variable that sets the port.
wait_ready() {
    local pid=$1 file=$2 name=$3 port_variable=$4 port=$5
    for _ in $(seq 100); do
        [ -s "$file" ] && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "run: the $name exited during start; see its log above."
            echo "run: if port $port is in use, set $port_variable to a" \
                 "free port."
            stop 1
        fi
        sleep 0.1
    done
    echo "run: the $name did not start within 10 seconds"
    stop 1
}

# Each server runs in a session of its own, so that Ctrl-C and a closed
# terminal signal only this script, and stop() can stop them in order.
# setsid does not fork here, because a background job of a script is not
# a process group leader, so $! is the server's own process id.
# The CPU instance type, and a GPU one for each CUDA device that can
# train, as `train devices` lists them at the first start. The file is
# kept after that, so that an operator can edit it; delete it to look
# for devices again.
config="$data/instance-types.yaml"
[ -f "$config" ] || {
    echo "instance_types:"
    echo "  - name: cpu"
    echo "    device: cpu"
    echo "    price_per_hour: \"0.50\""
    echo "    capacity: 1"
    "$build/bin/train" devices 2>/dev/null | while read -r index name; do
        echo "  - name: gpu$index"
        echo "    device: $index"
        echo "    price_per_hour: \"2.50\""
        echo "    capacity: 1"
    done
} >"$config"
gpus=$(grep -c '^  - name: gpu' "$config" || true)
echo "Instance types: cpu (\$0.50/h)$( [ "$gpus" -gt 0 ] &&
    echo ", $gpus GPU type(s) (\$2.50/h)" ) from $config"

setsid "$build/bin/backend" --config "$config" --data "$data" \
    --listen "127.0.0.1:$backend_port" --port-file "$data/backend.port" &
backend_pid=$!
wait_ready "$backend_pid" "$data/backend.port" backend \
    TRAINYARD_BACKEND_PORT "$backend_port"

setsid "$build/bin/gateway" --listen "$host:$port" \
    --backend "127.0.0.1:$backend_port" --secret "$data/gateway.secret" \
    --ui "$build/ui" --access-log "$data/access.log" \
    --port-file "$data/gateway.port" &
gateway_pid=$!
wait_ready "$gateway_pid" "$data/gateway.port" gateway TRAINYARD_PORT "$port"

echo
echo "Trainyard is running at http://$host:$port/"
echo "$credentials"
echo "Data folder: $data. Press Ctrl-C to stop."
echo

# Whichever exits first, stop the other.
wait -n
echo "run: a server exited unexpectedly"
stop 1
