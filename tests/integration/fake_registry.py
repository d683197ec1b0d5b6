#!/usr/bin/python3
"""A minimal Docker Registry HTTP API v2 server for the integration tests (stdlib only).

It serves one image, library/busybox:latest, built at start-up from Debian's busybox-static:
/bin/busybox plus one symlink per applet (/bin/sh, /bin/echo, /bin/sleep, ...) in a gzip'd tar
layer, an image config (architecture amd64, os linux, rootfs.diff_ids = sha256 of the
uncompressed tar) and a schema2 manifest (application/vnd.docker.distribution.manifest.v2+json).
A dockerd started with --registry-mirror http://127.0.0.1:PORT then answers `docker pull busybox`
(docker.io/library/busybox) from it, with no network.

  GET  /v2/                                 200 {} (Docker-Distribution-API-Version: registry/2.0)
  HEAD/GET /v2/<name>/manifests/<tag|digest> the manifest, with its Content-Type and digest
  HEAD/GET /v2/<name>/blobs/<digest>         the config or the layer (Range: bytes=N- honoured)
  anything else                              404 with a registry error body

Usage: fake_registry.py [--host 127.0.0.1] [--port 0] [--port-file FILE] [--busybox /bin/busybox]
                        [--log FILE]
Port 0 (the default) lets the kernel choose: the port is written to --port-file (atomically,
once the socket listens) and printed on stdout.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MT_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
REPOS = ("library/busybox", "busybox")
TAGS = ("latest",)
EPOCH = 1700000000  # fixed mtimes: the same busybox gives the same digests


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def build_image(busybox):
    """Returns {digest: (media type, bytes)} and the manifest's digest."""
    if not os.access(busybox, os.X_OK):
        sys.exit("fake_registry: no %s (install the Debian package busybox-static)" % busybox)
    applets = subprocess.run([busybox, "--list"], check=True, capture_output=True,
                             text=True).stdout.split()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add_dir(name, mode=0o755):
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, mode, EPOCH
            tar.addfile(ti)
        add_dir("bin")
        add_dir("tmp", 0o1777)
        with open(busybox, "rb") as f:
            body = f.read()
        ti = tarfile.TarInfo("bin/busybox")
        ti.size, ti.mode, ti.mtime = len(body), 0o755, EPOCH
        tar.addfile(ti, io.BytesIO(body))
        for a in sorted(set(applets)):
            if a == "busybox" or "/" in a:
                continue
            ti = tarfile.TarInfo("bin/" + a)
            ti.type, ti.linkname, ti.mode, ti.mtime = tarfile.SYMTYPE, "busybox", 0o777, EPOCH
            tar.addfile(ti)
    layer_tar = raw.getvalue()
    layer = gzip.compress(layer_tar, mtime=0)
    config = json.dumps({
        "architecture": "amd64",
        "os": "linux",
        "created": "2023-11-14T22:13:20Z",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [sha(layer_tar)]},
        "history": [{"created": "2023-11-14T22:13:20Z",
                     "created_by": "fake_registry.py: Debian busybox-static"}],
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "size": len(config), "digest": sha(config)},
        "layers": [{"mediaType": MT_LAYER, "size": len(layer), "digest": sha(layer)}],
    }, indent=3).encode()
    blobs = {sha(config): (MT_CONFIG, config), sha(layer): (MT_LAYER, layer)}
    return blobs, (sha(manifest), manifest)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "flotilla-fake-registry/1"
    blobs = {}
    manifest = ("", b"")
    log = None
    log_lock = threading.Lock()

    def log_message(self, fmt, *args):
        if self.log:
            with self.log_lock:
                self.log.write("%s %s\n" % (self.log_date_time_string(), fmt % args))
                self.log.flush()

    def reply(self, code, body=b"", ctype="application/json", headers=(), send_body=True):
        self.send_response(code)
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if send_body and body:
            self.wfile.write(body)

    def error(self, code, err, msg, head):
        body = json.dumps({"errors": [{"code": err, "message": msg, "detail": None}]}).encode()
        self.reply(code, body, send_body=not head)

    def route(self, head):
        path = self.path.split("?", 1)[0]
        if path in ("/v2", "/v2/"):
            return self.reply(200, b"{}", send_body=not head)
        m = re.fullmatch(r"/v2/(.+)/(manifests|blobs)/([^/]+)", path)
        if not m:
            return self.error(404, "UNSUPPORTED", "no such endpoint: " + path, head)
        name, kind, ref = m.groups()
        if name not in REPOS:
            return self.error(404, "NAME_UNKNOWN", "repository name not known to registry", head)
        if kind == "manifests":
            digest, body = self.manifest
            if ref not in TAGS and ref != digest:
                return self.error(404, "MANIFEST_UNKNOWN", "manifest unknown", head)
            return self.reply(200, body, MT_MANIFEST,
                              [("Docker-Content-Digest", digest), ("Etag", '"%s"' % digest)],
                              send_body=not head)
        if ref not in self.blobs:
            return self.error(404, "BLOB_UNKNOWN", "blob unknown to registry", head)
        ctype, body = self.blobs[ref]
        hdrs = [("Docker-Content-Digest", ref), ("Etag", '"%s"' % ref),
                ("Accept-Ranges", "bytes"), ("Cache-Control", "max-age=31536000")]
        rng = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", "") or "")
        if rng:
            start = int(rng.group(1))
            end = int(rng.group(2)) if rng.group(2) else len(body) - 1
            end = min(end, len(body) - 1)
            if start > end:
                return self.reply(416, b"", ctype,
                                  [("Content-Range", "bytes */%d" % len(body))], not head)
            return self.reply(206, body[start:end + 1], "application/octet-stream",
                              hdrs + [("Content-Range", "bytes %d-%d/%d" % (start, end, len(body)))],
                              send_body=not head)
        return self.reply(200, body, "application/octet-stream", hdrs, send_body=not head)

    def do_GET(self):
        self.route(False)

    def do_HEAD(self):
        self.route(True)

    def other(self):
        self.error(405, "UNSUPPORTED", "this registry is read-only", False)

    do_POST = do_PUT = do_PATCH = do_DELETE = other


def main():
    ap = argparse.ArgumentParser(description="minimal read-only Docker Registry v2 (busybox)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--busybox", default="/bin/busybox")
    ap.add_argument("--log")
    args = ap.parse_args()

    Handler.blobs, Handler.manifest = build_image(args.busybox)
    if args.log:
        Handler.log = open(args.log, "a")
    srv = ThreadingHTTPServer((args.host, args.port), Handler)
    srv.daemon_threads = True
    port = srv.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.rename(tmp, args.port_file)
    print(port, flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
