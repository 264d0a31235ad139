#!/usr/bin/env bash
# The store matrix of docs/benchmarks.md: acked sends/s and ack latency for 1, 16 and 256
# senders over 1 and 100 rooms, as fast as acks return and at 5,000 sends/s, on PostgreSQL
# and on SQLite, three runs each, one daemon per store. Writes JSON lines to OUT; summarize
# them with benches/scripts/summarize.py OUT.
#
#   benches/scripts/store-matrix.sh OUT POSTGRES_URL
#
# Run from the repository root after
#   cargo build --release --locked -p chatd -p chatd-benches
# POSTGRES_URL names an empty database (e.g. postgres://postgres@127.0.0.1:5432/chatd_bench).
set -euo pipefail
out=${1:?usage: store-matrix.sh OUT POSTGRES_URL}
pg_url=${2:?usage: store-matrix.sh OUT POSTGRES_URL}
bin=$PWD/target/release
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
: >"$out"

# clients rooms messages-per-client outstanding [rate]
specs=(
    "1 1 2000 1" "1 100 2000 1"
    "16 1 500 1" "16 100 500 1"
    "16 1 2000 16" "16 100 2000 16"
    "16 1 1875 16 5000" "16 100 1875 16 5000"
)
# QUICK=1: one small run per store, to check the script itself.
[ "${QUICK:-}" = 1 ] && specs=("2 3 20 2")

run_store() {
    local store=$1 url=$2
    mkdir -p "$work/$store"
    cat >"$work/$store/chatd.toml" <<TOML
log_level = "warn"
data_dir = "$work/$store"
[listen]
websocket = "127.0.0.1:0"
quic = "127.0.0.1:0"
[store]
url = "$url"
[limits]
# The per-session limits protect real users; here they would measure the token bucket.
sends_per_sec = 1000000
send_burst = 1000000
outbox_capacity = 65536
# every client connects from 127.0.0.1
max_connections_per_address = 4294967295
max_pending_handshakes = 4294967295
max_rooms_per_session = 128
TOML
    "$bin/chatd" --config "$work/$store/chatd.toml" >"$work/$store/stdout" 2>"$work/$store/stderr" &
    local pid=$!
    for _ in $(seq 100); do
        grep -q listening "$work/$store/stdout" 2>/dev/null && break
        sleep 0.1
    done
    local ws
    ws=$(grep -o 'ws://[0-9.:]*' "$work/$store/stdout")
    for spec in "${specs[@]}"; do
        read -r clients rooms messages outstanding rate <<<"$spec"
        local extra=()
        [ -n "${rate:-}" ] && extra=(--rate "$rate")
        for _ in $([ "${QUICK:-}" = 1 ] && echo 1 || echo 1 2 3); do
            report=$("$bin/loadgen" --url "$ws" --admin-socket "$work/$store/chatd.sock" \
                --daemon-pid "$pid" --clients "$clients" --rooms "$rooms" \
                --messages "$messages" --concurrency "$outstanding" "${extra[@]}" 2>/dev/null) \
                || echo "run failed or incorrect: $store $spec" >&2
            [ -n "$report" ] && echo "{\"store\":\"$store\",\"report\":$report}" >>"$out"
        done
    done
    kill -TERM "$pid"
    wait "$pid" || true
}

run_store postgres "$pg_url"
run_store sqlite ""
