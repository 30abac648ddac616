#!/usr/bin/env bash
# Crash safety of the Zarr v2 write path: TRIALS times, 4 chain processes are SIGKILLed at a
# random moment, resumed by new processes, and the finished run is checked value by value by
# a reader that cannot import mcbackend. Usage: bash sigkill_trials.sh [python] [trials]
set -uo pipefail
PY=${1:-python}; TRIALS=${2:-10}
cd "$(dirname "$0")"
S='{"auto_mkdir": true}'
ok=0
for t in $(seq 1 "$TRIALS"); do
  URL=$(mktemp -d)/run
  $PY zarr_v2.py init "$URL" --storage-options "$S" --chunk-bytes 8192
  PIDS=()
  for c in 0 1 2 3; do
    $PY zarr_v2.py chain "$URL" $c --storage-options "$S" --flush 30 2>/dev/null &
    PIDS+=($!)
  done
  sleep "$(awk -v s="$RANDOM" 'BEGIN{srand(s); printf "%.2f", 4 + 5*rand()}')"
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  committed=$(cat "$URL"/_mcbackend/chains/*.json 2>/dev/null | $PY -c 'import sys,json,re; print([json.loads(x)["draws"] for x in re.findall(r"\{[^{}]*\}", sys.stdin.read())])')
  for c in 0 1 2 3; do
    if [ -f "$URL/_mcbackend/chains/$c.json" ]; then
      $PY zarr_v2.py chain "$URL" $c --storage-options "$S" --flush 30 --resume
    else
      $PY zarr_v2.py chain "$URL" $c --storage-options "$S" --flush 30
    fi
  done
  if $PY read_check.py "$URL" > "$URL.check" 2>&1 && grep -q "all values equal" "$URL.check"; then
    ok=$((ok + 1)); echo "trial $t: killed at committed $committed -> resumed, all values equal"
  else
    echo "trial $t: killed at committed $committed -> FAILED"; grep -v "Warn\|warn" "$URL.check" | tail -3
  fi
  rm -rf "$(dirname "$URL")"
done
echo "$ok of $TRIALS trials intact"
