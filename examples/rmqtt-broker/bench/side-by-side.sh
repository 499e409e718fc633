#!/usr/bin/env bash
# Two brokers side by side, on loopback, under the same loads:
#   bridge   two mosquitto brokers joined by a bridge (topic # both 1)
#   cluster  two project brokers: a core-broker and a worker-broker
#   rmqtt    one rmqtt broker alone (`mqtt-cluster-broker --standalone`:
#            rmqtt's own router and shared subscriptions, the node idle)
#   single   one mosquitto alone
# Loads: QoS 0 offered at 200 000 msg/s (nothing acknowledges QoS 0, and
# mosquitto 2.0.11 resets publishers that flood it unpaced), QoS 1 as fast
# as acknowledged and paced at 1 000 msg/s, 100-byte payloads, publishers
# on one broker and subscribers on the other (the single-broker references
# take both on their one broker); and a fan-out case (QoS 1, one topic,
# subscribers on both brokers).
#
# Needs the Debian packages `mosquitto` and `mosquitto-clients` (it
# installs nothing); run from the repository's root:
#   examples/rmqtt-broker/bench/side-by-side.sh [seconds per load, default 10]
set -euo pipefail

seconds="${1:-10}"
for tool in mosquitto mosquitto_pub; do
  if ! command -v "$tool" > /dev/null; then
    echo "side-by-side: needs the Debian packages mosquitto and mosquitto-clients" >&2
    echo "  (apt-get install mosquitto mosquitto-clients)" >&2
    exit 2
  fi
done

manifest=examples/rmqtt-broker/Cargo.toml
cargo build --release --quiet --manifest-path "$manifest" --bins
target="$(cargo metadata --format-version 1 --no-deps --manifest-path "$manifest" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
broker="$target/release/mqtt-cluster-broker"
bench="$target/release/mqtt-cluster-bench"

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null || true; done
  wait 2> /dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

wait_port() {
  for _ in $(seq 1 100); do
    if (echo > "/dev/tcp/127.0.0.1/$1") 2> /dev/null; then return 0; fi
    sleep 0.1
  done
  echo "side-by-side: nothing listens on port $1" >&2
  exit 1
}

start_mosquitto() { # name port [bridge-to-port]
  local conf="$work/$1.conf"
  {
    echo "listener $2 127.0.0.1"
    echo "allow_anonymous true"
    echo "persistence false"
    echo "max_queued_messages 100000"
    echo "max_inflight_messages 128"
    echo "log_dest none"
    if [ -n "${3:-}" ]; then
      echo "connection bridge-$1"
      echo "address 127.0.0.1:$3"
      echo "topic # both 1"
      echo "cleansession true"
      echo "bridge_protocol_version mqttv311"
    fi
  } > "$conf"
  mosquitto -c "$conf" > "$work/$1.log" 2>&1 &
  pids+=($!)
  wait_port "$2"
}

start_project() { # name mqtt-port api-port core(true/false) core-api-port [broker flags]
  local conf="$work/$1.yaml"
  {
    echo "core: $4"
    echo "host: 127.0.0.1"
    echo "port: $3"
    echo "nodeName: $1"
    echo "clusters: [http://127.0.0.1:$5]"
    echo "secret: side-by-side-secret-long-enough"
  } > "$conf"
  "$broker" --config "$conf" --mqtt "127.0.0.1:$2" "${@:6}" > "$work/$1.log" 2>&1 &
  pids+=($!)
  wait_port "$2"
}

stop_all() {
  for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null || true; done
  wait 2> /dev/null || true
  pids=()
}

results="$work/results"
: > "$results"
run_load() { # setup load publish-on subscribe-on qos rate
  local json
  json="$("$bench" --publish-on "$3" --subscribe-on "$4" --publishers 4 --subscribers 4 \
    --qos "$5" --rate "$6" --size 100 --duration "${seconds}s" --drain 3s 2> /dev/null | tail -1)"
  echo "$1|$2|$json" >> "$results"
  echo "$1 $2: $json" >&2
}

loads() { # setup publish-on subscribe-on fan-out-subscribe-on
  # QoS 0 has no acknowledgement to pace it: an offered load, high.
  run_load "$1" "qos0 200k/s" "$2" "$3" 0 200000
  run_load "$1" "qos1 fast" "$2" "$3" 1 0
  run_load "$1" "qos1 1000/s" "$2" "$3" 1 1000
  run_load "$1" "fan-out qos1" "$2" "$4" 1 0
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
start_mosquitto bridge-a 18831
start_mosquitto bridge-b 18832 18831
sleep 1
loads bridge 127.0.0.1:18831 127.0.0.1:18832 127.0.0.1:18831,127.0.0.1:18832
stop_all

start_project core1 18841 18941 true 18941
start_project worker1 18842 18942 false 18941
sleep 2
loads cluster 127.0.0.1:18841 127.0.0.1:18842 127.0.0.1:18841,127.0.0.1:18842
stop_all

start_project alone 18851 18951 true 18951 --standalone
sleep 1
loads rmqtt 127.0.0.1:18851 127.0.0.1:18851 127.0.0.1:18851
stop_all

start_mosquitto single 18861
loads single 127.0.0.1:18861 127.0.0.1:18861 127.0.0.1:18861
stop_all
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

python3 - "$results" << 'PY'
import json, sys
rows = [line.rstrip("\n").split("|", 2) for line in open(sys.argv[1]) if line.strip()]
print(f"{'setup':<8} {'load':<13} {'received/s':>11} {'lost':>7} {'dup':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
for setup, load, text in rows:
    try:
        r = json.loads(text)
    except ValueError:
        print(f"{setup:<8} {load:<13} failed: {text[:60]}")
        continue
    l = r["latency"]
    print(f"{setup:<8} {load:<13} {r['received_per_s']:>11.0f} {r['lost']:>7} {r['duplicated']:>5} "
          f"{l['p50_us']/1000:>8.2f} {l['p99_us']/1000:>8.2f} {l['max_us']/1000:>8.2f}")
PY
