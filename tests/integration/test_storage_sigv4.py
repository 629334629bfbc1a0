#!/usr/bin/python3
"""Cross-checks edgerec's SigV4 signer against two independent ones on
randomized requests: botocore (header signing for S3 and for a generic
service, and S3 presigned URLs) and curl --aws-sigv4 (the request curl sends
to a local capture server is re-signed by edgerec and must carry the same
Authorization). edgerec's signer is driven through `test_storage --sign`.
Exits non-zero on the first disagreement."""
import datetime
import hashlib
import http.server
import os
import random
import subprocess
import sys
import threading
import types
import urllib.parse

import botocore.auth
import botocore.awsrequest
import botocore.credentials

BUILD = os.environ.get("EDGEREC_BUILD_DIR", "build")
SIGNER = os.path.join(BUILD, "tests", "test_storage")
rng = random.Random(int(os.environ.get("SIGV4_SEED", "20261124")))

SEGMENT_CHARS = ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                 "-._~ !$&'()*+,;=@:%\u00e9\u4e2d")
VALUE_CHARS = "abcXYZ019-._~ /+=&?%:@\u00fc"


def rand_text(chars, lo, hi):
    return "".join(rng.choice(chars) for _ in range(rng.randint(lo, hi)))


def quote(s, safe):
    return urllib.parse.quote(s, safe=safe)


def rand_path(dots=False):
    segs = [rand_text(SEGMENT_CHARS, 1, 10) for _ in range(rng.randint(1, 4))]
    if dots and rng.random() < 0.5:
        segs.insert(rng.randint(0, len(segs)), rng.choice([".", ".."]))
    path = "/" + "/".join(quote(s, "-_.~") if s not in (".", "..") else s for s in segs)
    if rng.random() < 0.3:
        path += "/"
    return path


def rand_query(unique=False):
    pairs, keys = [], set()
    for _ in range(rng.randint(0, 5)):
        k = rand_text(VALUE_CHARS, 1, 8)
        v = rand_text(VALUE_CHARS, 0, 12)
        if unique and k in keys:
            continue
        keys.add(k)
        pairs.append(quote(k, "-_.~") + "=" + quote(v, "-_.~"))
    return "&".join(pairs)


def rand_headers():
    hs = []
    for _ in range(rng.randint(0, 4)):
        name = "X-Amz-Meta-" + rand_text("abcdefghij0123-", 1, 8)
        value = rng.choice(["", " ", "  "]) + rand_text("abc XYZ 123\"'", 1, 16) + rng.choice(["", " "])
        hs.append((name, value))
    if rng.random() < 0.5:
        hs.append(("Content-Type", rng.choice(["video/webm", "application/xml", "text/plain; charset=utf-8"])))
    return hs


def edgerec_sign(records):
    """records: list of dicts; returns the signer's output lines."""
    lines = []
    for r in records:
        hs = r["headers"]
        lines.append("\t".join([r["mode"], r["method"], r["path"], r["query"] or "-", r["date"],
                                r["region"], r["service"], r["ak"], r["sk"], r["payload"] or "-",
                                str(r.get("expires", 0)), str(len(hs))]))
        for n, v in hs:
            lines.append(f"{n}\t{v}")
    out = subprocess.run([SIGNER, "--sign"], input="\n".join(lines) + "\n", capture_output=True,
                         text=True, check=True).stdout
    return out.splitlines()


def freeze_botocore_clock(when):
    class Frozen(datetime.datetime):
        @classmethod
        def utcnow(cls):
            return when

        @classmethod
        def now(cls, tz=None):
            return when if tz is None else when.replace(tzinfo=tz)
    botocore.auth.datetime = types.SimpleNamespace(datetime=Frozen, timezone=datetime.timezone,
                                                   timedelta=datetime.timedelta)


def check_botocore(n):
    failures = 0
    cases, expected = [], []
    for i in range(n):
        when = datetime.datetime(2015 + rng.randint(0, 12), rng.randint(1, 12), rng.randint(1, 28),
                                 rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59))
        freeze_botocore_clock(when)
        date = when.strftime("%Y%m%dT%H%M%SZ")
        ak = "AK" + rand_text("ABCDEFGHIJ0123456789", 8, 18)
        sk = rand_text("abcdefghijABCDEFGHIJ0123456789/+", 20, 40)
        region = rng.choice(["us-east-1", "eu-west-3", "ap-south-1"])
        creds = botocore.credentials.Credentials(ak, sk)
        kind = rng.choice(["s3", "s3", "service", "presign"])
        host = rng.choice(["examplebucket.s3.amazonaws.com", "127.0.0.1:9000", "minio.local"])
        path = rand_path(dots=(kind == "service"))
        # botocore's presigner keeps one value per query key; AWS (and
        # edgerec) sign every pair, so presigned cases use distinct keys.
        query = rand_query(unique=(kind == "presign"))
        method = rng.choice(["GET", "PUT", "POST", "DELETE", "HEAD"]) if kind != "presign" else "GET"
        body = rand_text("abc\n{}<>", 0, 64).encode() if method in ("PUT", "POST") else b""
        headers = [("Host", host)] + (rand_headers() if kind != "presign" else [])
        url = f"http://{host}{path}" + (f"?{query}" if query else "")
        req = botocore.awsrequest.AWSRequest(method=method, url=url, data=body)
        for name, value in headers:
            req.headers[name] = value
        service = "s3" if kind in ("s3", "presign") else "service"
        if kind == "s3":
            botocore.auth.S3SigV4Auth(creds, "s3", region).add_auth(req)
        elif kind == "service":
            botocore.auth.SigV4Auth(creds, "service", region).add_auth(req)
        else:
            expires = rng.randint(1, 604800)
            botocore.auth.S3SigV4QueryAuth(creds, "s3", region, expires=expires).add_auth(req)
        payload = hashlib.sha256(body).hexdigest()
        if kind == "presign":
            signed_url = urllib.parse.urlsplit(req.url)
            got = dict(urllib.parse.parse_qsl(signed_url.query, keep_blank_values=True))
            expected.append(("presign", got["X-Amz-Signature"]))
            cases.append(dict(mode="presign", method=method, path=path, query=query, date=date,
                              region=region, service=service, ak=ak, sk=sk, payload=None,
                              expires=expires, headers=headers))
        else:
            signed = [(k, v) for k, v in req.headers.items() if k.lower() != "authorization"]
            if kind == "s3":
                payload = req.headers["X-Amz-Content-SHA256"]
            expected.append(("header", req.headers["Authorization"]))
            cases.append(dict(mode="header", method=method, path=path, query=query, date=date,
                              region=region, service=service, ak=ak, sk=sk, payload=payload,
                              headers=signed))
    got = edgerec_sign(cases)
    for case, (mode, want), line in zip(cases, expected, got):
        ok = (line.endswith("X-Amz-Signature=" + want) if mode == "presign" else line == want)
        if not ok:
            failures += 1
            print(f"MISMATCH botocore {mode} {case['method']} {case['path']}?{case['query']}\n"
                  f"  headers {case['headers']}\n  botocore {want}\n  edgerec  {line}")
    print(f"botocore: {len(cases)} requests, {failures} mismatches")
    return failures == 0 and len(got) == len(cases)


class Capture(http.server.BaseHTTPRequestHandler):
    seen = []

    def _any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        Capture.seen.append((self.command, self.path, self.headers, body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_PUT = do_POST = do_DELETE = _any

    def log_message(self, *args):
        pass


def check_curl(n):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Capture)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    failures, cases, expected = 0, [], []
    try:
        for i in range(n):
            region = rng.choice(["us-east-1", "eu-central-1"])
            ak = "AK" + rand_text("ABCDEFGHIJ0123456789", 8, 16)
            sk = rand_text("abcdefghijABCDEFGHIJ0123456789/+", 20, 40)
            method = rng.choice(["GET", "PUT", "POST", "DELETE"])
            path = rand_path()
            # curl 7.88 signs the query as written: send it already in
            # canonical (sorted, strictly encoded) form.
            pairs = sorted(p.split("=", 1) for p in rand_query().split("&") if p)
            query = "&".join(f"{k}={v}" for k, v in pairs)
            args = ["curl", "-s", "-o", "/dev/null", "--aws-sigv4", f"aws:amz:{region}:s3",
                    "--user", f"{ak}:{sk}", "-X", method]
            for name, value in rand_headers():
                if name.lower().startswith("x-amz-"):
                    args += ["-H", f"{name}: {value.strip() or 'v'}"]
            if method in ("PUT", "POST"):
                args += ["--data-binary", rand_text("abcdef0123", 1, 40)]
            args.append(f"http://127.0.0.1:{port}{path}" + (f"?{query}" if query else ""))
            Capture.seen.clear()
            subprocess.run(args, check=True, timeout=20)
            cmd, raw_path, headers, body = Capture.seen[-1]
            auth = headers["Authorization"]
            names = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
            signed = [(nm, headers[nm]) for nm in names]
            p, _, q = raw_path.partition("?")
            cases.append(dict(mode="header", method=cmd, path=p, query=q, date=headers["X-Amz-Date"],
                              region=region, service="s3", ak=ak, sk=sk,
                              payload=headers.get("X-Amz-Content-Sha256") or hashlib.sha256(body).hexdigest(),
                              headers=signed))
            expected.append(auth)
    finally:
        srv.shutdown()
    got = edgerec_sign(cases)
    for case, want, line in zip(cases, expected, got):
        if line != want:
            failures += 1
            print(f"MISMATCH curl {case['method']} {case['path']}?{case['query']}\n"
                  f"  headers {case['headers']}\n  curl    {want}\n  edgerec {line}")
    print(f"curl --aws-sigv4: {len(cases)} requests, {failures} mismatches")
    return failures == 0 and len(got) == len(cases)


def main():
    if not os.access(SIGNER, os.X_OK):
        print(f"{SIGNER} is not built")
        return 1
    ok = check_botocore(300)
    ok = check_curl(40) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
