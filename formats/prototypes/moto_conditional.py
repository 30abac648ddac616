"""What moto 5 supports of S3 conditional writes (If-None-Match / If-Match; s3fs create mode).

python formats/prototypes/moto_conditional.py
"""

import os
import socket

import boto3
import botocore.exceptions
import s3fs
from moto.server import ThreadedMotoServer

for key, value in [("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                   ("AWS_DEFAULT_REGION", "us-east-1")]:  # fmt: skip
    os.environ.setdefault(key, value)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=url)
    client.create_bucket(Bucket="bkt")

    def put(body=b"x", **conditions) -> str:
        try:
            r = client.put_object(Bucket="bkt", Key="k", Body=body, **conditions)
            return "OK etag=" + r["ETag"]
        except botocore.exceptions.ClientError as e:
            meta = e.response["ResponseMetadata"]
            return f"REFUSED {e.response['Error']['Code']} {meta['HTTPStatusCode']}"

    print("create If-None-Match=* (absent):", put(IfNoneMatch="*"))
    print("create If-None-Match=* (exists):", put(IfNoneMatch="*"))
    etag = client.head_object(Bucket="bkt", Key="k")["ETag"]
    print("If-Match current etag:", put(b"y", IfMatch=etag))
    print("If-Match stale etag:", put(b"z", IfMatch=etag))
    client.delete_object(Bucket="bkt", Key="k")
    print("If-Match on absent key:", put(IfMatch=etag))
    fs = s3fs.S3FileSystem(endpoint_url=url, key="testing", secret="testing")
    for i in range(2):
        try:
            fs.pipe_file("bkt/y", b"1", mode="create")
            print(f"s3fs pipe_file(mode='create') #{i}: OK")
        except Exception as e:
            print(f"s3fs pipe_file(mode='create') #{i}: {type(e).__name__} {e}")
    server.stop()


if __name__ == "__main__":
    main()
