"""A real single-node Garage object store for the offsite tests.

``Garage()`` starts ``garage server`` in a temporary directory on 127.0.0.1
(S3 API, RPC and admin API each on a free port), assigns its one-node layout
with Garage's own CLI and waits until it is healthy. Buckets and keys are
made with the CLI too, so the tests need no account and no network.

``stop()`` and ``start()`` keep the ports and the data: a test stops the
store to see the offsite code fail on a store that is down, and starts it
again to see it pick up where it was. ``close()`` also removes the directory.

The binary is ``$CRB_GARAGE``, or ``bin/garage`` under ``$CRB_GARAGE_ROOT``
(default ``~/.cache/crb-garage``), where ``scripts/test`` installs Garage
2.5.0 with ``cargo install``.

The object helpers (``put``, ``get``, ``delete``, ``list_objects``) go
through boto3 with a key of the harness's own, allowed on every bucket made
by ``create_bucket``: a test can look at, damage or remove what the offsite
code stored without using the offsite code.
"""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

REGION = "garage"


def default_binary():
    """Where the binary is expected (it may not exist)."""
    if os.environ.get("CRB_GARAGE"):
        return os.environ["CRB_GARAGE"]
    root = os.environ.get("CRB_GARAGE_ROOT") or os.path.expanduser("~/.cache/crb-garage")
    return os.path.join(root, "bin", "garage")


def _free_ports(n):
    # Bind all n sockets before closing any, so the kernel cannot hand out
    # the same port twice.
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _die_with_parent_fn():
    # A pytest that is killed (CI timeout, ^C twice) must not leave a Garage
    # listening: on Linux the kernel sends the server SIGTERM when its parent
    # dies. prctl is looked up here, before the fork, so that the child only
    # makes the call.
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    PR_SET_PDEATHSIG = 1
    return lambda: prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class GarageError(RuntimeError):
    pass


class Garage:
    """A running single-node Garage; see the module's docstring."""

    region = REGION

    def __init__(self, binary=None, start_timeout=30):
        self.binary = binary or default_binary()
        if not os.access(self.binary, os.X_OK):
            raise GarageError(f"no Garage binary at {self.binary}")
        self.start_timeout = start_timeout
        self.dir = tempfile.mkdtemp(prefix="crb-garage-")
        self.config = os.path.join(self.dir, "garage.toml")
        self.log = os.path.join(self.dir, "garage.log")
        self.s3_port, self.rpc_port, self.admin_port = _free_ports(3)
        self.endpoint = f"http://127.0.0.1:{self.s3_port}"
        self.proc = None
        self.key_id = self.secret = self._client = None
        self._write_config()
        try:
            self.start(healthy=False)
            self._assign_layout()
            self._wait(healthy=True)
            # The harness's own key, for the object helpers.
            self.key_id, self.secret = self.create_key("crb-harness")
        except BaseException:
            self.close()
            raise

    def _write_config(self):
        # sqlite: built into this binary (bundled-libs) and, unlike lmdb, it
        # does not reserve a large memory map for each test server.
        text = f"""\
metadata_dir = "{self.dir}/meta"
data_dir = "{self.dir}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{self.rpc_port}"
rpc_public_addr = "127.0.0.1:{self.rpc_port}"
rpc_secret = "{secrets.token_hex(32)}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{self.s3_port}"

[admin]
api_bind_addr = "127.0.0.1:{self.admin_port}"
"""
        # The file holds the RPC secret: only its owner may read it.
        fd = os.open(self.config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)

    # --- the server process ---

    def start(self, healthy=True):
        """Start the server (again: same config, ports and data) and wait
        until it answers; with ``healthy`` (the default) until it can also
        serve reads and writes, which needs the layout assigned."""
        if self.proc is not None and self.proc.poll() is None:
            return
        env = dict(os.environ, NO_COLOR="1")  # plain log lines, no ANSI codes
        env.pop("RUST_LOG", None)  # Garage's default: info for the server
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-c", self.config, "server"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=_die_with_parent_fn(),
            )
        self._wait(healthy)

    def _wait(self, healthy):
        # The admin API's /health answers 503 until the layout gives every
        # partition a node, then 200. Any HTTP answer means the server is up.
        url = f"http://127.0.0.1:{self.admin_port}/health"
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                raise GarageError(
                    f"garage server exited with status {self.proc.returncode}\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return  # 200
            except urllib.error.HTTPError:
                if not healthy:
                    return
            except OSError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                self.stop()
                raise GarageError(
                    f"garage server not {'healthy' if healthy else 'answering'} "
                    f"after {self.start_timeout}s\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def stop(self, timeout=15):
        """SIGTERM, and wait until the server has exited; the data stays for
        ``start()``.

        Garage serves the keep-alive connections that are still open for up
        to 10 s after SIGTERM before it exits, so a client that is still
        alive (an S3 client of the code under test) makes this take 10 s;
        without one it takes about 1 s. After ``timeout`` seconds the server
        gets SIGKILL: what it has acknowledged is on disk by then (sqlite
        commits, data blocks written before a PUT's answer)."""
        if self._client is not None:
            self._client.close()  # the harness's own keep-alive connections
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def close(self):
        """Stop the server and remove its directory."""
        # No graceful wait: the data goes too, and a client the tests left
        # unclosed would hold Garage's shutdown 10 s.
        self.stop(timeout=2)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def log_tail(self, lines=40):
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no log)"

    # --- Garage's CLI ---

    def cli(self, *args):
        """Run ``garage -c CONFIG ARGS...`` against this server; its stdout."""
        env = dict(os.environ, NO_COLOR="1")
        p = subprocess.run(
            [self.binary, "-c", self.config, *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        if p.returncode != 0:
            raise GarageError(f"garage {' '.join(args)}: exit {p.returncode}\n{p.stdout}{p.stderr}")
        return p.stdout

    def _assign_layout(self):
        # The node id is the first column of the one row under HEALTHY NODES
        # in `garage status` (a 16-hex-digit prefix, which `layout assign`
        # takes).
        lines = self.cli("status").splitlines()
        head = next(i for i, line in enumerate(lines) if line.startswith("ID "))
        node_id = lines[head + 1].split()[0]
        self.cli("layout", "assign", "-z", "dc1", "-c", "1G", node_id)
        self.cli("layout", "apply", "--version", "1")

    def create_bucket(self, name):
        """A bucket named ``name`` (S3 rules: 3-63 of a-z 0-9 . -); the
        harness's key may read and write it."""
        self.cli("bucket", "create", name)
        if self.key_id:  # not yet while __init__ makes the harness's key
            self.allow(name, self.key_id)
        return name

    def create_key(self, name):
        """A new access key: ``(key_id, secret)``."""
        # json-api prints the admin API's JSON answer: no table to parse.
        out = json.loads(self.cli("json-api", "CreateKey", json.dumps({"name": name})))
        return out["accessKeyId"], out["secretAccessKey"]

    def allow(self, bucket, key_id):
        """Let ``key_id`` read, write and own ``bucket``."""
        self.cli("bucket", "allow", "--read", "--write", "--owner", bucket, "--key", key_id)

    # --- S3, through boto3 ---

    def client(self, key_id=None, secret=None, **config):
        """A boto3 S3 client for this Garage (path-style addressing), with
        the harness's key unless another is given; ``config`` goes to
        ``botocore.config.Config`` (e.g. ``retries={"max_attempts": 1}``)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=key_id or self.key_id,
            aws_secret_access_key=secret or self.secret,
            config=Config(s3={"addressing_style": "path"}, **config),
        )

    def _own(self):
        # One client for the helpers: making a boto3 client takes ~50 ms.
        if self._client is None:
            self._client = self.client()
        return self._client

    def put(self, bucket, key, data):
        self._own().put_object(Bucket=bucket, Key=key, Body=data)

    def get(self, bucket, key):
        return self._own().get_object(Bucket=bucket, Key=key)["Body"].read()

    def delete(self, bucket, key):
        self._own().delete_object(Bucket=bucket, Key=key)

    def list_objects(self, bucket, prefix=""):
        """``{key: size}`` of every object under ``prefix``."""
        pages = self._own().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}
