"""A TLS server that misbehaves on purpose, for uringfetch's https tests.

python3 tls_server.py MODE CERT KEY: listens on 127.0.0.1, port 0, prints
the port, and serves each connection on a thread. OpenSSL does the TLS
(through memory BIOs, so the raw bytes on the socket are under control):

  ok            answers every request `ok`, keep-alive
  tls10         as ok, but speaks TLS 1.0 only
  reset         reads the first bytes of the ClientHello, then resets
  stall         accepts and never says anything
  close_notify  answers once, sends close_notify, then more bytes
  stall_record  answers with the first half of the response's record, then stalls
"""

import socket
import ssl
import struct
import sys
import threading
import time

mode, certfile, keyfile = sys.argv[1:4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(certfile, keyfile)
if mode == "tls10":
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1
if mode == "tls13":
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def handle(c):
    if mode == "stall":
        time.sleep(60)
        return
    if mode == "reset":
        c.recv(10)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
        return
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    s = ctx.wrap_bio(inc, out, server_side=True)

    def flush():
        data = out.read()
        if data:
            c.sendall(data)

    def fill():
        data = c.recv(65536)
        if not data:
            raise EOFError
        inc.write(data)

    while True:
        try:
            s.do_handshake()
            break
        except ssl.SSLWantReadError:
            flush()
            fill()
        except ssl.SSLError:
            # The alert OpenSSL wrote goes out, as a socket server's would.
            flush()
            return
    flush()
    while True:
        buf = b""
        while b"\r\n\r\n" not in buf:
            try:
                buf += s.read(65536)
            except ssl.SSLWantReadError:
                flush()
                fill()
        if mode == "close_notify":
            s.write(RESPONSE)
            flush()
            try:
                s.unwrap()
            except ssl.SSLWantReadError:
                pass
            flush()
            # An application-data record after the close_notify.
            c.sendall(b"\x17\x03\x03\x00\x05hello")
            time.sleep(0.5)
            return
        s.write(RESPONSE)
        if mode == "stall_record":
            data = out.read()
            c.sendall(data[: len(data) // 2])
            time.sleep(60)
            return
        flush()


def serve(c):
    try:
        handle(c)
    except Exception:
        pass
    finally:
        try:
            c.close()
        except Exception:
            pass


listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(128)
print(listener.getsockname()[1], flush=True)
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
