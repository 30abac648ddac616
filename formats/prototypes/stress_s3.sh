#!/usr/bin/env bash
# Race test of the shape protocol: 8 chain processes of DIFFERENT lengths on moto S3, capacity
# doubling from 1 draw (a metadata rewrite at every power of two), closing at different times.
# Then every array must have the exact final shape and every chain all its draws.
set -euo pipefail
PY=${1:-python}; CHAINS=${2:-8}
cd "$(dirname "$0")"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
$PY -c "from moto.server import ThreadedMotoServer as T; import time; s=T(ip_address='127.0.0.1', port=$PORT, verbose=False); s.start(); time.sleep(3600)" 2>/dev/null &
MOTO=$!
trap 'kill $MOTO' EXIT
sleep 2
SO="{\"endpoint_url\": \"http://127.0.0.1:$PORT\", \"key\": \"testing\", \"secret\": \"testing\"}"
$PY -c "import s3fs, json; s3fs.S3FileSystem(**json.loads('$SO')).mkdir('runs')"
URL=s3://runs/stress
$PY zarr_v2.py init $URL --storage-options "$SO" --chunk-bytes 4096
PIDS=()
for c in $(seq 0 $((CHAINS - 1))); do
  $PY zarr_v2.py chain $URL $c --storage-options "$SO" --capacity-min 1 --flush 25 --tune 50 --draws $((300 + 97 * c)) 2>/dev/null &
  PIDS+=($!)
done
for p in "${PIDS[@]}"; do wait "$p"; done
$PY - "$URL" "$SO" "$CHAINS" <<'PYEOF'
import json, sys
import numpy as np, zarr
from demo_model import synthetic_chain
url, so, chains = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
root = zarr.open_group(url, mode="r", storage_options=so)
longest = 300 + 97 * (chains - 1)
bad = []
for group, d in [("posterior", longest), ("warmup_posterior", 50), ("sample_stats", longest), ("warmup_sample_stats", 50)]:
    for name, arr in root[group].arrays():
        if name in ("chain", "draw"):
            if arr.shape != ((chains,) if name == "chain" else (d,)):
                bad.append(f"{group}/{name} {arr.shape}")
        elif arr.ndim >= 2 and arr.shape[:2] != (chains, d):
            bad.append(f"{group}/{name} {arr.shape}")
for c in range(chains):
    n = 300 + 97 * c
    values, _ = synthetic_chain(c, 50, n)
    got = root["posterior"]["mu"][c]
    if not (np.array_equal(got[:n], values["mu"][50:]) and np.isnan(got[n:]).all()):
        bad.append(f"chain {c} values")
print(f"{chains} chains, lengths 300..{longest}: shapes exact and all draws present" if not bad else f"FAILED: {bad}")
PYEOF
