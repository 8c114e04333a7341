# Driven by test-xapi-https.sh: XenAPI over HTTPS with a client that
# trusts the daemon's self-signed certificate (and one that does not).
#   xapi-https.py HTTPS_URL CERT
import socket
import ssl
import sys
import urllib.parse
import xmlrpc.client

url, cert = sys.argv[1], sys.argv[2]
ctx = ssl.create_default_context(cafile=cert)
ctx.check_hostname = False  # the certificate names localhost, we dial an IP
x = xmlrpc.client.ServerProxy(url, context=ctx)
r = x.session.login_with_password("root", "secret", "2.21", "test")
assert r["Status"] == "Success", r
s = r["Value"]
r = x.SR.get_all(s)
assert r["Status"] == "Success" and len(r["Value"]) == 2, r
r = x.session.login_with_password("root", "wrong")
assert r["ErrorDescription"][0] == "SESSION_AUTHENTICATION_FAILED", r
assert x.session.logout(s)["Status"] == "Success"

# A body over the limit is refused over TLS too, from the headers alone.
u = urllib.parse.urlsplit(url)
raw = socket.create_connection((u.hostname, u.port), timeout=300)
tls = ctx.wrap_socket(raw)
tls.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
            b"Content-Length: 50000000\r\n\r\n")
reply = tls.recv(4096)
assert reply.startswith(b"HTTP/1.1 413"), reply
tls.close()
r = x.session.login_with_password("root", "wrong")
assert r["ErrorDescription"][0] == "SESSION_AUTHENTICATION_FAILED", r

# A client that does not trust the certificate must refuse the server.
try:
    xmlrpc.client.ServerProxy(url).session.login_with_password("root", "x")
    raise AssertionError("untrusted certificate accepted")
except ssl.SSLError:
    pass
print("xapi-https: passed")
