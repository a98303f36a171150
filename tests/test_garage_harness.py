"""The Garage harness (tests/garage.py, the ``garage`` and ``s3_bucket``
fixtures) against the real server: the offsite tests rely on a bucket that
takes and returns bytes, on a key that is checked, and on stop()/start()
being a real outage that loses nothing."""

import subprocess
import sys

import botocore.exceptions
import pytest


def test_put_get_round_trip(garage, s3_bucket):
    s3 = garage.client(s3_bucket.key_id, s3_bucket.secret)
    data = bytes(range(256)) * 4099  # > 1 MiB: more than one Garage block
    s3.put_object(Bucket=s3_bucket.bucket, Key="dir/Data.fs", Body=data)
    got = s3.get_object(Bucket=s3_bucket.bucket, Key="dir/Data.fs")["Body"].read()
    assert got == data
    # The harness's own helpers see the same object.
    assert garage.list_objects(s3_bucket.bucket) == {"dir/Data.fs": len(data)}
    assert garage.list_objects(s3_bucket.bucket, prefix="other/") == {}
    assert garage.get(s3_bucket.bucket, "dir/Data.fs") == data
    garage.delete(s3_bucket.bucket, "dir/Data.fs")
    assert garage.list_objects(s3_bucket.bucket) == {}


def test_wrong_secret_is_refused(garage, s3_bucket):
    wrong = s3_bucket.secret[:-1] + ("0" if s3_bucket.secret[-1] != "0" else "1")
    s3 = garage.client(s3_bucket.key_id, wrong, retries={"max_attempts": 1})
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket=s3_bucket.bucket, Key="x", Body=b"x")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert garage.list_objects(s3_bucket.bucket) == {}


def test_key_sees_only_its_bucket(garage, s3_bucket):
    other = garage.create_bucket(s3_bucket.bucket + "-other")
    s3 = garage.client(s3_bucket.key_id, s3_bucket.secret, retries={"max_attempts": 1})
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket=other, Key="x", Body=b"x")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_env_is_what_an_s3_client_reads(garage, s3_bucket, tmp_path):
    # A fresh process with nothing but env(): boto3 takes the key and the
    # region from it, as the offsite code's S3 client will.
    script = (
        "import boto3, sys\n"
        "s3 = boto3.client('s3', endpoint_url=sys.argv[1],"
        " config=boto3.session.Config(s3={'addressing_style': 'path'}))\n"
        "s3.put_object(Bucket=sys.argv[2], Key='from-env', Body=b'env')\n"
    )
    env = s3_bucket.env({"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    subprocess.run(
        [sys.executable, "-c", script, s3_bucket.endpoint, s3_bucket.bucket],
        env=env,
        check=True,
        timeout=60,
    )
    assert garage.get(s3_bucket.bucket, "from-env") == b"env"


def test_stop_is_an_outage_and_start_brings_the_data_back(garage, s3_bucket):
    s3 = garage.client(
        s3_bucket.key_id, s3_bucket.secret, retries={"max_attempts": 1}, connect_timeout=2
    )
    s3.put_object(Bucket=s3_bucket.bucket, Key="kept", Body=b"before the outage")
    port = garage.s3_port
    s3.close()  # else its keep-alive connection holds Garage's shutdown 10 s
    garage.stop()
    try:
        with pytest.raises(botocore.exceptions.EndpointConnectionError):
            s3.get_object(Bucket=s3_bucket.bucket, Key="kept")
    finally:
        garage.start()
    assert garage.s3_port == port
    got = s3.get_object(Bucket=s3_bucket.bucket, Key="kept")["Body"].read()
    assert got == b"before the outage"
