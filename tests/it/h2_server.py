"""An HTTP/2 (h2c, prior knowledge) server that misbehaves on purpose, for
uringfetch's tests: built on the h2 package (python3-h2 from Debian) or,
for what h2 would refuse to send, on raw frames. Listens on 127.0.0.1, a
free port, printed on the first line of stdout; one thread per connection.

Modes:
  ok                  every request gets 200 "ok\\n"
  tiny-window         the server's windows are 100 bytes (connection 65,535),
                      opened as it reads; the answer is the body length read
  max-streams-1       SETTINGS_MAX_CONCURRENT_STREAMS 1; a stream beyond it
                      is refused (REFUSED_STREAM), which the test sees
  goaway              after 5 responses on a connection, GOAWAY naming the
                      last stream processed, then close once it is sent
  rst-every-other     every other stream is reset (INTERNAL_ERROR)
  refuse-every-third  every third request is refused (REFUSED_STREAM)
  ping-idle           after each response, a PING; a connection whose ACK
                      has not come within 200 ms is closed (GOAWAY), as
                      servers that ping idle connections do
  huge-headers        each response's header list is 156,000 bytes
  framing             each response: an interim 103, a head of 40,000
                      bytes (HEADERS and CONTINUATIONs), the body
                      "framing ok\n" in padded DATA frames of 3 bytes,
                      then trailers that end the stream
  continuation-flood  (raw) HEADERS without END_HEADERS, then CONTINUATION
                      frames without end
  ping-flood          (raw) PING frames without end, never reading
  no-settings-ack     (raw) SETTINGS, then nothing: the client's SETTINGS
                      are never acknowledged
  goaway-first        (raw) once the client's first HEADERS came, GOAWAY
                      ENHANCE_YOUR_CALM "calm down" with last stream 0
  bad-frame           (raw) once the client's first HEADERS came, a DATA
                      frame on stream 0 (a connection error of type
                      PROTOCOL_ERROR); then reads to the end

Every mode prints a line to stdout for each GOAWAY the client sends,
"goaway CODE DEBUG", and for each connection the client closes, "closed"
(over TLS, "closed, close_notify" or "closed, no close_notify").

Usage: h2_server.py MODE [CERT KEY]: with a certificate and key, TLS with
ALPN h2 (h2 over TLS), else h2c with prior knowledge.
"""

import socket
import ssl
import struct
import sys
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.settings

MODE = sys.argv[1]
TLS = None
if len(sys.argv) > 3:
    TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    TLS.load_cert_chain(sys.argv[2], sys.argv[3])
    TLS.set_alpn_protocols(["h2"])


def frame(kind, flags, stream, payload=b""):
    n = len(payload)
    return struct.pack(">BHBBL", n >> 16, n & 0xFFFF, kind, flags, stream) + payload


def read_preface(sock):
    got = b""
    while len(got) < 24:
        chunk = sock.recv(24 - len(got))
        if not chunk:
            return False
        got += chunk
    return True


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Frames:
    """Splits what the client sends into frames, reporting its GOAWAYs."""

    def __init__(self):
        self.buf = b""

    def feed(self, data):
        self.buf += data
        kinds = []
        while len(self.buf) >= 9:
            n = (self.buf[0] << 16) | (self.buf[1] << 8) | self.buf[2]
            if len(self.buf) < 9 + n:
                break
            kind, payload = self.buf[3], self.buf[9 : 9 + n]
            self.buf = self.buf[9 + n :]
            kinds.append(kind)
            if kind == 7 and n >= 8:
                code = struct.unpack(">L", payload[4:8])[0]
                say("goaway %d %s" % (code, payload[8:].decode("utf-8", "replace")))
        return kinds


def read_to_end(sock, frames):
    """Reads until the client closes; says how."""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            frames.feed(data)
    except ssl.SSLEOFError:
        say("closed, no close_notify")
        return
    except OSError:
        say("closed, reset")
        return
    say("closed, close_notify" if isinstance(sock, ssl.SSLSocket) else "closed")


def raw(sock):
    if not read_preface(sock):
        return
    sock.sendall(frame(4, 0, 0))
    if MODE in ("bad-frame", "goaway-first"):
        frames = Frames()
        while True:
            data = sock.recv(65536)
            if not data:
                say("closed")
                return
            if 1 in frames.feed(data):
                break
        if MODE == "bad-frame":
            sock.sendall(frame(0, 0, 0, b"x"))
        else:
            sock.sendall(frame(7, 0, 0, struct.pack(">LL", 0, 0xB) + b"calm down"))
        read_to_end(sock, frames)
        return
    if MODE == "no-settings-ack":
        while sock.recv(65536):
            pass
        return
    if MODE == "ping-flood":
        ping = frame(6, 0, 0, b"12345678") * 512
        while True:
            sock.sendall(ping)
    if MODE == "continuation-flood":
        # A header block for stream 1 that never ends.
        sock.sendall(frame(1, 0, 1, b"\x88"))
        cont = frame(9, 0, 1, b"\x40\x01a\x01b" * 1000)
        while True:
            sock.sendall(cont)


def serve_h2(sock):
    config = h2.config.H2Configuration(client_side=False, header_encoding=None)
    conn = h2.connection.H2Connection(config=config)
    settings = {}
    if MODE == "tiny-window":
        settings[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] = 100
    if MODE == "max-streams-1":
        settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = 1
    conn.initiate_connection()
    if settings:
        conn.update_settings(settings)
    sock.sendall(conn.data_to_send())
    bodies = {}
    served = 0
    seen = 0
    open_streams = set()
    pinged = 0
    ping_due = None
    while True:
        if MODE == "ping-idle":
            left = None if ping_due is None else max(0.0, ping_due - time.monotonic())
            sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            sys.stderr.write("no PING ACK within 200 ms: closing\n")
            conn.close_connection(last_stream_id=conn.highest_inbound_stream_id)
            sock.sendall(conn.data_to_send())
            return
        except ssl.SSLEOFError:
            say("closed, no close_notify")
            return
        except OSError:
            return
        if not data:
            say("closed, close_notify" if isinstance(sock, ssl.SSLSocket) else "closed")
            return
        try:
            events = conn.receive_data(data)
        except Exception:
            return
        for e in events:
            if isinstance(e, h2.events.ConnectionTerminated):
                say("goaway %d %s" % (e.error_code, (e.additional_data or b"").decode()))
            if isinstance(e, h2.events.PingAckReceived):
                ping_due = None
            if isinstance(e, h2.events.RequestReceived):
                seen += 1
                open_streams.add(e.stream_id)
                bodies[e.stream_id] = 0
                if MODE == "max-streams-1" and len(open_streams) > 1:
                    sys.stderr.write("too many streams\n")
                if MODE == "rst-every-other" and seen % 2 == 0:
                    conn.reset_stream(e.stream_id, error_code=2)
                    open_streams.discard(e.stream_id)
                    continue
                if MODE == "refuse-every-third" and seen % 3 == 0:
                    conn.reset_stream(e.stream_id, error_code=7)
                    open_streams.discard(e.stream_id)
                    continue
                if e.stream_ended:
                    served += respond(conn, e.stream_id, b"ok\n")
                    open_streams.discard(e.stream_id)
            elif isinstance(e, h2.events.DataReceived):
                bodies[e.stream_id] = bodies.get(e.stream_id, 0) + len(e.data)
                conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
                if e.stream_ended:
                    served += respond(conn, e.stream_id, b"%d" % bodies[e.stream_id])
                    open_streams.discard(e.stream_id)
            elif isinstance(e, h2.events.StreamEnded):
                if e.stream_id in open_streams and e.stream_id in bodies:
                    served += respond(conn, e.stream_id, b"%d" % bodies[e.stream_id])
                    open_streams.discard(e.stream_id)
            if MODE == "goaway" and served >= 5:
                conn.close_connection(last_stream_id=conn.highest_inbound_stream_id)
                sock.sendall(conn.data_to_send())
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(65536):
                    pass
                return
        if MODE == "ping-idle" and served > pinged and not open_streams:
            pinged = served
            conn.ping(b"are-you?")
            ping_due = time.monotonic() + 0.2
        out = conn.data_to_send()
        if out:
            sock.sendall(out)


def respond(conn, stream_id, body):
    if MODE == "framing":
        body = b"framing ok\n"
        conn.send_headers(stream_id, [(b":status", b"103"), (b"link", b"</x>")])
        big = [(b"x-big-%d" % i, b"b" * 380) for i in range(100)]
        conn.send_headers(stream_id, [(b":status", b"200")] + big)
        for i in range(0, len(body), 3):
            conn.send_data(stream_id, body[i : i + 3], pad_length=7)
        conn.send_headers(stream_id, [(b"x-trailer", b"yes")], end_stream=True)
        return 1
    headers = [(b":status", b"200"), (b"content-length", b"%d" % len(body))]
    if MODE == "huge-headers":
        # 2,000 fields of 40 bytes: a header list of 156,000 bytes (many
        # small fields: Python's HPACK encodes one huge value slowly).
        headers += [(b"x-%d" % i, b"h" * 40) for i in range(2000)]
    conn.send_headers(stream_id, headers)
    conn.send_data(stream_id, body, end_stream=True)
    return 1


def handle(sock):
    try:
        if TLS is not None:
            sock = TLS.wrap_socket(sock, server_side=True, suppress_ragged_eofs=False)
        if MODE in (
            "continuation-flood",
            "ping-flood",
            "no-settings-ack",
            "bad-frame",
            "goaway-first",
        ):
            raw(sock)
        else:
            serve_h2(sock)
    except OSError:
        pass
    finally:
        sock.close()


def main():
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    print(listener.getsockname()[1], flush=True)
    while True:
        sock, _ = listener.accept()
        threading.Thread(target=handle, args=(sock,), daemon=True).start()


main()
