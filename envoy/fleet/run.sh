#!/usr/bin/env bash
# The fleet demo (`make run-fleet`): Redis, switchyard-limits and two Envoys on loopback, sharing the
# limits and budgets of envoy/fleet/gateway.yaml and its response cache's fleet tier. Ctrl-C stops all.
#
#   Envoy A  http://127.0.0.1:10000  (admin 9901)      switchyard-limits  gRPC 127.0.0.1:8081
#   Envoy B  http://127.0.0.1:10001  (admin 9902)                         admin http://127.0.0.1:9091
#   redis-server 127.0.0.1:6390 (limits and budgets: append-only file in dist/fleet/, noeviction)
#   redis-server 127.0.0.1:6391 (cache entries: no persistence, 64 MB, allkeys-lru)
set -euo pipefail
cd "$(dirname "$0")/../.."
ENVOY=${ENVOY:-.venv/bin/envoy}
LOG=${LOG:-warn}
STATE=dist/fleet
mkdir -p "$STATE"

pids=()
stop() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap stop EXIT INT TERM

dist/switchyard check envoy/fleet/gateway.yaml
dist/switchyard render envoy/fleet/gateway.yaml -o "$STATE/envoy-a.yaml"
# The second Envoy: the same config on the next ports.
sed -e 's/port_value: 10000 }/port_value: 10001 }/' -e 's/port_value: 9901 }/port_value: 9902 }/' \
  "$STATE/envoy-a.yaml" >"$STATE/envoy-b.yaml"
grep -q 'port_value: 10001 }' "$STATE/envoy-b.yaml" || { echo "could not derive the second Envoy's config"; exit 1; }

redis-server --bind 127.0.0.1 --port 6390 --dir "$STATE" --appendonly yes --appendfsync everysec \
  --save '' --maxmemory-policy noeviction --daemonize no --loglevel warning &
pids+=($!)
redis-server --bind 127.0.0.1 --port 6391 --dir "$STATE" --appendonly no --save '' \
  --maxmemory 64mb --maxmemory-policy allkeys-lru --daemonize no --loglevel warning &
pids+=($!)
dist/switchyard-limits --grpc 127.0.0.1:8081 --admin 127.0.0.1:9091 --redis redis://127.0.0.1:6390 \
  --cache-redis redis://127.0.0.1:6391 &
pids+=($!)
"$ENVOY" -c "$STATE/envoy-a.yaml" --concurrency 2 --base-id 11 --log-level "$LOG" &
pids+=($!)
"$ENVOY" -c "$STATE/envoy-b.yaml" --concurrency 2 --base-id 12 --log-level "$LOG" &
pids+=($!)

cat <<'MSG'

  two Envoys share one budget: the demo key may make 20 requests a minute across both
    for p in 10000 10001 10000 10001; do
      curl -s http://127.0.0.1:$p/v1/chat/completions -H 'authorization: Bearer sk-switchyard-demo' \
        -H 'content-type: application/json' -d '{"model":"echo","messages":[{"role":"user","content":"hi"}]}' \
        -o /dev/null -w "$p %{http_code}\n"
    done
  one answer for both (the response cache's fleet tier): a miss on the first Envoy, a hit on the other
    for p in 10000 10001; do
      curl -s -D - -o /dev/null http://127.0.0.1:$p/v1/chat/completions -H 'authorization: Bearer sk-switchyard-demo' \
        -H 'content-type: application/json' -d '{"model":"echo","messages":[{"role":"user","content":"cache me"}]}' \
        | grep -i '^x-switchyard-cache'; sleep 0.2
    done
  spend so far:   curl -s 'http://127.0.0.1:9091/spend?key=demo'
  service stats:  curl -s http://127.0.0.1:9091/metrics

MSG
wait -n "${pids[@]}"
echo "a process of the fleet demo exited; stopping the others"
