"""The middleware Swift users turn on, through python-swiftclient (and
plain HTTP where a browser would be the client): symlinks, container
quotas, FormPost, CORS, public reads, static websites, TempURLs made by
swiftclient's own generate_temp_url, and nested SLOs. Bad input must be
refused and store nothing."""
import hashlib
import hmac
import json
import os
import time

import requests
from swiftclient.client import ClientException, Connection
from swiftclient.utils import generate_temp_url

ENDPOINT = os.environ["NUBO_S3_ENDPOINT"]
conn = Connection(authurl=ENDPOINT + "/auth/v1.0", user="test:tester", key="testing")
url, token = conn.get_auth()
account_path = url[url.index("/v1/"):]
AUTH = {"X-Auth-Token": token}


def refused(status, fn):
    try:
        fn()
    except ClientException as e:
        assert e.http_status == status, (e.http_status, status, str(e))
        return
    raise AssertionError(f"expected {status}")


def missing(container, name):
    refused(404, lambda: conn.head_object(container, name))


# ---- symlinks ----------------------------------------------------------
conn.put_container("links")
conn.put_object("links", "target", b"target bytes", content_type="text/plain")
conn.put_object("links", "link", b"", headers={"X-Symlink-Target": "links/target"})
h, body = conn.get_object("links", "link")
assert body == b"target bytes", body
assert h["content-location"].endswith("/links/target"), h
assert h["content-type"] == "text/plain", h
h, body = conn.get_object("links", "link", query_string="symlink=get")
assert body == b"" and h["x-symlink-target"] == "links/target", h
assert h["content-type"] == "application/symlink", h
h, body = conn.get_object("links", "link", headers={"Range": "bytes=0-5"})
assert body == b"target", body

etag = hashlib.md5(b"target bytes").hexdigest()
conn.put_object("links", "static", b"",
                headers={"X-Symlink-Target": "links/target", "X-Symlink-Target-Etag": etag})
assert conn.get_object("links", "static")[1] == b"target bytes"
refused(409, lambda: conn.put_object("links", "bad-static", b"", headers={
    "X-Symlink-Target": "links/target", "X-Symlink-Target-Etag": "0" * 32}))
refused(409, lambda: conn.put_object("links", "bad-static", b"", headers={
    "X-Symlink-Target": "links/absent", "X-Symlink-Target-Etag": etag}))
missing("links", "bad-static")
conn.put_object("links", "target", b"changed")
refused(409, lambda: conn.get_object("links", "static"))  # the target changed
assert conn.get_object("links", "link")[1] == b"changed"  # a dynamic link follows

conn.put_object("links", "a", b"", headers={"X-Symlink-Target": "links/b"})
conn.put_object("links", "b", b"", headers={"X-Symlink-Target": "links/a"})
refused(409, lambda: conn.get_object("links", "a"))  # a cycle
conn.put_object("links", "hop2", b"", headers={"X-Symlink-Target": "links/link"})
assert conn.get_object("links", "hop2")[1] == b"changed"  # two links in a row
conn.put_object("links", "hop3", b"", headers={"X-Symlink-Target": "links/hop2"})
refused(409, lambda: conn.get_object("links", "hop3"))  # three are too many
conn.put_object("links", "dangling", b"", headers={"X-Symlink-Target": "links/nothing"})
refused(404, lambda: conn.get_object("links", "dangling"))
conn.put_object("links", "elsewhere", b"", headers={
    "X-Symlink-Target": "c/o", "X-Symlink-Target-Account": "AUTH_other"})
refused(403, lambda: conn.get_object("links", "elsewhere"))
refused(400, lambda: conn.put_object("links", "x", b"body",
                                     headers={"X-Symlink-Target": "links/target"}))
refused(412, lambda: conn.put_object("links", "x", b"", headers={"X-Symlink-Target": "no-slash"}))
missing("links", "x")
conn.copy_object("links", "link", destination="/links/copied")
h, body = conn.get_object("links", "copied", query_string="symlink=get")
assert body == b"changed" and "x-symlink-target" not in h, h
r = requests.request("COPY", url + "/links/link?symlink=get",
                     headers={**AUTH, "Destination": "links/link-copy"})
assert r.status_code == 201, r.text
h = conn.head_object("links", "link-copy", query_string="symlink=get")
assert h["x-symlink-target"] == "links/target", h

# ---- container quotas ---------------------------------------------------
conn.put_container("quota", headers={"X-Container-Meta-Quota-Bytes": "10",
                                     "X-Container-Meta-Quota-Count": "2"})
conn.put_object("quota", "a", b"12345")
refused(413, lambda: conn.put_object("quota", "b", b"123456"))
missing("quota", "b")
conn.put_object("quota", "b", b"12345")
refused(413, lambda: conn.put_object("quota", "c", b""))  # the count
missing("quota", "c")
refused(400, lambda: conn.post_container("quota", {"X-Container-Meta-Quota-Bytes": "lots"}))
conn.post_container("quota", {"X-Container-Meta-Quota-Count": "", "X-Container-Meta-Quota-Bytes": "100"})
conn.put_object("quota", "c", b"x" * 90)
refused(413, lambda: conn.copy_object("quota", "c", destination="/quota/d"))
missing("quota", "d")

# ---- FormPost -------------------------------------------------------------
conn.put_container("forms", headers={"X-Container-Meta-Temp-URL-Key": "fkey"})
form_path = account_path + "/forms/up/"


def form(max_size=100, max_count=2, expires=None, redirect="", key=b"fkey", signature=None):
    expires = expires or int(time.time() + 60)
    body = f"{form_path}\n{redirect}\n{max_size}\n{max_count}\n{expires}"
    sig = signature or hmac.new(key, body.encode(), hashlib.sha1).hexdigest()
    return {"redirect": redirect, "max_file_size": str(max_size),
            "max_file_count": str(max_count), "expires": str(expires), "signature": sig}


def post_form(fields, files):
    return requests.post(ENDPOINT + form_path, data=fields, files=files, allow_redirects=False)


two = [("file1", ("a.txt", b"hello", "text/plain")), ("file2", ("b.txt", b"world", "text/x-b"))]
r = post_form(form(), two)
assert r.status_code == 201, (r.status_code, r.text)
assert conn.get_object("forms", "up/a.txt")[1] == b"hello"
h, body = conn.get_object("forms", "up/b.txt")
assert body == b"world" and h["content-type"] == "text/x-b", h
for fields, why in [(form(signature="0" * 40), "Invalid Signature"),
                    (form(key=b"wrong"), "Invalid Signature"),
                    (form(expires=int(time.time() - 1)), "Form Expired")]:
    r = post_form(fields, [("file1", ("forged.txt", b"x", "text/plain"))])
    assert r.status_code == 401 and why in r.text, (r.status_code, r.text)
missing("forms", "up/forged.txt")
r = post_form(form(max_size=10), [("file1", ("big.txt", b"x" * 11, "text/plain"))])
assert r.status_code == 400 and "Max_File_Size Exceeded" in r.text, (r.status_code, r.text)
missing("forms", "up/big.txt")
three = two + [("file3", ("c.txt", b"third", "text/plain"))]
r = post_form(form(max_count=2), three)
assert r.status_code == 400 and "Max File Count Exceeded" in r.text, (r.status_code, r.text)
missing("forms", "up/c.txt")
r = post_form(form(redirect="https://app.example/done"), two)
assert r.status_code == 303, r.status_code
assert r.headers["Location"] == "https://app.example/done?status=201&message=", r.headers

# ---- CORS -------------------------------------------------------------------
conn.put_container("cors", headers={
    "X-Container-Meta-Access-Control-Allow-Origin": "http://app.example",
    "X-Container-Meta-Access-Control-Max-Age": "30"})
conn.put_object("cors", "o", b"x", headers={"X-Object-Meta-Color": "blue"})
pre = requests.options(url + "/cors/o", headers={
    "Origin": "http://app.example", "Access-Control-Request-Method": "PUT",
    "Access-Control-Request-Headers": "x-auth-token"})
assert pre.status_code == 200, pre.status_code
assert pre.headers["Access-Control-Allow-Origin"] == "http://app.example"
assert pre.headers["Access-Control-Max-Age"] == "30"
assert "x-auth-token" in pre.headers["Access-Control-Allow-Headers"]
bad = requests.options(url + "/cors/o", headers={
    "Origin": "http://evil.example", "Access-Control-Request-Method": "GET"})
assert bad.status_code == 401, bad.status_code
got = requests.get(url + "/cors/o", headers={**AUTH, "Origin": "http://app.example"})
assert got.headers["Access-Control-Allow-Origin"] == "http://app.example"
assert "x-object-meta-color" in got.headers["Access-Control-Expose-Headers"]
other = requests.get(url + "/cors/o", headers={**AUTH, "Origin": "http://evil.example"})
assert "Access-Control-Allow-Origin" not in other.headers

# ---- public reads and static websites ----------------------------------------
conn.put_container("site", headers={
    "X-Container-Read": ".r:*,.rlistings",
    "X-Container-Meta-Web-Index": "index.html",
    "X-Container-Meta-Web-Error": "error.html",
    "X-Container-Meta-Web-Listings": "true"})
conn.put_object("site", "index.html", b"<h1>home</h1>", content_type="text/html")
conn.put_object("site", "404error.html", b"not here", content_type="text/html")
conn.put_object("site", "docs/index.html", b"docs home", content_type="text/html")
conn.put_object("site", "files/a.txt", b"a", content_type="text/plain")
r = requests.get(url + "/site/")
assert r.status_code == 200 and r.content == b"<h1>home</h1>", (r.status_code, r.content)
r = requests.get(url + "/site", allow_redirects=False)
assert r.status_code == 301 and r.headers["Location"].endswith("/site/"), r.headers
r = requests.get(url + "/site/docs", allow_redirects=False)
assert r.status_code == 301 and r.headers["Location"].endswith("/site/docs/"), r.headers
assert requests.get(url + "/site/docs/").content == b"docs home"
r = requests.get(url + "/site/files/")
assert r.status_code == 200 and "a.txt" in r.text and "<table" in r.text, r.text
r = requests.get(url + "/site/nothing-here")
assert r.status_code == 404 and r.content == b"not here", (r.status_code, r.content)
assert requests.get(url + "/site/files/a.txt").content == b"a"
assert requests.put(url + "/site/evil", data=b"x").status_code == 401
missing("site", "evil")
r = requests.get(url + "/site/", headers={**AUTH, "X-Web-Mode": "true"})
assert r.content == b"<h1>home</h1>"
# With a token and no web mode, the container is a container.
assert requests.get(url + "/site", headers=AUTH).status_code == 200

conn.put_container("pub", headers={"X-Container-Read": ".r:*"})
conn.put_object("pub", "o", b"public")
assert requests.get(url + "/pub/o").content == b"public"
assert requests.get(url + "/pub").status_code == 401  # no .rlistings
conn.put_container("private")
conn.put_object("private", "secret", b"private bytes")
assert requests.get(url + "/private/secret").status_code == 401
# A public large object may not read a private container's segments.
conn.put_object("pub", "slo", json.dumps([{"path": "/private/secret"}]),
                query_string="multipart-manifest=put")
r = requests.get(url + "/pub/slo")
assert r.status_code == 403 and b"private bytes" not in r.content, r.status_code
conn.put_object("pub", "sneaky", b"", headers={"X-Symlink-Target": "private/secret"})
r = requests.get(url + "/pub/sneaky")
assert r.status_code == 403 and b"private bytes" not in r.content, r.status_code

# ---- TempURLs made by swiftclient ----------------------------------------------
conn.post_account({"X-Account-Meta-Temp-URL-Key": "akey"})
conn.put_container("tu")
conn.put_object("tu", "docs/r.txt", b"report")
obj = account_path + "/tu/docs/r.txt"
for digest in ["sha1", "sha256", "sha512"]:
    signed = generate_temp_url(obj, 60, "akey", "GET", digest=digest)
    r = requests.get(ENDPOINT + signed)
    assert r.status_code == 200 and r.content == b"report", (digest, r.status_code)
signed = generate_temp_url(obj, 60, "akey", "GET", iso8601=True)
assert "Z" in signed and requests.get(ENDPOINT + signed).content == b"report", signed
signed = generate_temp_url(account_path + "/tu/docs/", 60, "akey", "GET", prefix=True)
query = signed.split("?", 1)[1]
assert requests.get(ENDPOINT + obj + "?" + query).content == b"report"
conn.put_object("tu", "outside.txt", b"no")
assert requests.get(url + "/tu/outside.txt?" + query).status_code == 401
signed = generate_temp_url(obj, 60, "akey", "GET", ip_range="127.0.0.1")
assert requests.get(ENDPOINT + signed).status_code == 200
signed = generate_temp_url(obj, 60, "akey", "GET", ip_range="192.0.2.0/24")
assert requests.get(ENDPOINT + signed).status_code == 401
signed = generate_temp_url(obj, 60, "akey", "PUT")
assert requests.get(ENDPOINT + signed).status_code == 401  # a PUT URL does not GET

# ---- nested SLOs through swiftclient ----------------------------------------------
conn.put_container("slo")
a, b = os.urandom(1500), os.urandom(2500)
conn.put_object("slo", "seg-a", a)
conn.put_object("slo", "seg-b", b)
inner = [{"path": "/slo/seg-a", "etag": hashlib.md5(a).hexdigest(), "size_bytes": len(a)},
         {"path": "/slo/seg-b", "etag": hashlib.md5(b).hexdigest(), "size_bytes": len(b)}]
conn.put_object("slo", "inner", json.dumps(inner), query_string="multipart-manifest=put")
h = conn.head_object("slo", "inner")
outer = [{"path": "/slo/inner", "etag": h["etag"].strip('"'), "size_bytes": int(h["content-length"])},
         {"path": "/slo/seg-a", "range": "0-99"}]
conn.put_object("slo", "outer", json.dumps(outer), query_string="multipart-manifest=put")
h, body = conn.get_object("slo", "outer")
assert body == a + b + a[:100], len(body)
h, body = conn.get_object("slo", "outer", headers={"Range": "bytes=3990-4009"})
assert body == b[-10:] + a[:10]
print("swift middleware: ok")
