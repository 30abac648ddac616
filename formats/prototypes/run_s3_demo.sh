#!/usr/bin/env bash
# 4 chain processes write one Zarr v2 run concurrently on moto's S3 server; then a reader that
# cannot import mcbackend opens it with xarray and ArviZ. Usage: bash run_s3_demo.sh [python]
set -euo pipefail
PY=${1:-python}
cd "$(dirname "$0")"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
$PY -c "from moto.server import ThreadedMotoServer as T; import time; s=T(ip_address='127.0.0.1', port=$PORT, verbose=False); s.start(); time.sleep(3600)" &
MOTO=$!
trap 'kill $MOTO' EXIT
sleep 2
SO="{\"endpoint_url\": \"http://127.0.0.1:$PORT\", \"key\": \"testing\", \"secret\": \"testing\"}"
$PY -c "import s3fs, json; s3fs.S3FileSystem(**json.loads('$SO')).mkdir('runs')"
URL=s3://runs/demo
$PY zarr_v2.py init $URL --storage-options "$SO" --chunk-bytes 16384
for c in 0 1 2 3; do
  $PY zarr_v2.py chain $URL $c --storage-options "$SO" --capacity-min 64 --flush 50 &
done
sleep 8
echo "--- a plain reader while the chains are writing:"
$PY read_check.py $URL --storage-options "$SO" --mid-run 2>&1 | grep -v "Warn\|warn\|consolid\|^[0-9]\. \|tree = \|HTTP/1.1" || echo "(mid-run read failed)"
wait $(jobs -p | grep -v "^$MOTO$") 2>/dev/null || true
for j in $(jobs -p); do [ "$j" != "$MOTO" ] && wait "$j"; done
echo "--- after every chain closed:"
$PY read_check.py $URL --storage-options "$SO" 2>/dev/null
$PY -c "import s3fs, json; fs=s3fs.S3FileSystem(**json.loads('$SO')); print('objects:', len(fs.find('runs/demo')), ' commit records:', [json.loads(fs.cat(p))['draws'] for p in sorted(fs.glob('runs/demo/_mcbackend/chains/*.json'))])"
