"""The live server's security and reliability (issue 22): loopback by default, a token on every
state-changing request compared in constant time, 403 for a foreign Host (DNS rebinding) or
Origin, static files that cannot leave their folder, bodies limited before they are read, bad
uploads answered 4xx with a message, and pages that read slowly or not at all never blocking
the publisher (every frame either delivered or counted as dropped)."""

from __future__ import annotations

import http.client
import json
import socket
import struct
import threading
import zlib

import pytest
import torch
from test_live_channel import parse_sse

import cnnlab.live.server as server_module
from cnnlab.data.pipeline import Preprocess
from cnnlab.errors import ConfigError
from cnnlab.live.channel import Control, LiveChannel
from cnnlab.live.probe import model_probe
from cnnlab.live.server import MAX_CONTROL_BYTES, PAGE, TOKEN_HEADER, LiveServer
from cnnlab.models import create

PREPROCESS = Preprocess(channels=1, size=(32, 32), fit="resize", mean=[0.1], std=[0.3],
                        background=0.0)


def png_claiming(width: int, height: int) -> bytes:
    """A small, well-formed PNG whose header claims ``width x height`` 8-bit grey pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def small_png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (40, 40), 0).save(buffer, "PNG")
    return buffer.getvalue()


class Spy:
    """A probe that records its calls (and answers with the real LeNet-5 probe)."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.probe = model_probe(create("lenet5", num_classes=10, in_channels=1).eval(),
                                 PREPROCESS, [str(i) for i in range(10)])
        self.calls = 0

    def __call__(self, data: bytes) -> dict:
        self.calls += 1
        return self.probe(data)


@pytest.fixture
def live():
    channel, spy, logged = LiveChannel(), Spy(), []
    with LiveServer(channel=channel, probe=spy, log=logged.append) as server:
        server.spy, server.logged = spy, logged
        yield server


def request(server: LiveServer, method: str, path: str, body: bytes | None = None, *,
            token: str | None = None, host: str | None = None,
            headers: dict | None = None) -> tuple[int, dict, bytes]:
    """One request; ``host`` replaces the Host header; returns (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.putrequest(method, path, skip_host=host is not None, skip_accept_encoding=True)
    if host is not None:
        conn.putheader("Host", host)
    for name, value in {**({TOKEN_HEADER: token} if token is not None else {}),
                        **(headers or {})}.items():
        conn.putheader(name, value)
    if body is not None and "Content-Length" not in (headers or {}):
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    answer = conn.getresponse()
    result = answer.status, dict(answer.getheaders()), answer.read()
    conn.close()
    return result


def raw(server: LiveServer, data: bytes) -> tuple[int, bytes]:
    """Send bytes as they are; (status, body) of the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(data)
        reply = b""
        while chunk := sock.recv(1 << 16):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def control(server: LiveServer, action: str = "pause", *, headers: dict | None = None,
            **kw) -> tuple[int, dict, bytes]:
    return request(server, "POST", "/api/control", json.dumps({"action": action}).encode(),
                   headers={"Content-Type": "application/json", **(headers or {})}, **kw)


def test_binds_loopback_by_default_and_refuses_a_wildcard_address():
    with LiveServer() as server:
        assert server.httpd.server_address[0] == "127.0.0.1"
        assert server.url.startswith(f"http://127.0.0.1:{server.port}/#token=")
    for wildcard in ("0.0.0.0", "::"):
        with pytest.raises(ConfigError, match="every interface"):
            LiveServer(host=wildcard)


def test_each_server_makes_its_own_long_random_token():
    tokens = {LiveServer().token for _ in range(5)}
    assert len(tokens) == 5 and all(len(t) >= 43 for t in tokens)  # 32 random bytes


@pytest.mark.parametrize("token", [None, "", "wrong", "SAME-LENGTH"])
def test_state_changing_requests_need_the_token(live, token):
    given = None if token is None else (live.token[:-1] + "x" if token == "SAME-LENGTH" else token)
    status, _, body = control(live, "stop", token=given)
    assert status == 403 and "token" in json.loads(body)["error"]
    status, _, _ = request(live, "POST", "/api/probe", small_png(), token=given)
    assert status == 403
    assert live.channel.poll_controls() == [] and live.spy.calls == 0


def test_the_right_token_queues_the_control_for_the_trainer(live):
    status, _, body = request(live, "POST", "/api/control",
                              b'{"action": "lr_multiplier", "value": 0.5}', token=live.token)
    assert status == 202 and json.loads(body) == {"queued": {"action": "lr_multiplier",
                                                             "value": 0.5}}
    assert live.channel.poll_controls() == [Control("lr_multiplier", 0.5)]
    status, _, body = request(live, "POST", "/api/control", b'{"action": "lr_multiplier", '
                              b'"value": -1}', token=live.token)
    assert status == 400 and "must lie in" in json.loads(body)["error"]
    assert request(live, "POST", "/api/control", b"{not json", token=live.token)[0] == 400
    for value in (b"Infinity", b"NaN"):  # Python's JSON reader accepts them: still a 400
        body = b'{"action": "batch_size", "value": ' + value + b"}"
        assert request(live, "POST", "/api/control", body, token=live.token)[0] == 400
    assert live.channel.poll_controls() == []


def test_the_token_is_compared_in_constant_time(live, monkeypatch):
    compared = []
    original = server_module.hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return original(a, b)

    monkeypatch.setattr(server_module.hmac, "compare_digest", spy)
    assert control(live, token="guess")[0] == 403
    assert control(live, token=live.token)[0] == 202
    assert compared == [(b"guess", live.token.encode()), (live.token.encode(),) * 2]


@pytest.mark.parametrize("host", ["evil.example:{port}", "127.0.0.1:{other}", "localhost",
                                  "127.0.0.1", "", "evil.example", "127.0.0.1.nip.io:{port}"])
def test_a_foreign_host_header_gets_403(live, host):
    name = host.format(port=live.port, other=live.port + 1)
    for method, path in [("GET", "/"), ("GET", "/events"), ("GET", "/static/app.js")]:
        assert request(live, method, path, host=name)[0] == 403
    assert control(live, token=live.token, host=name)[0] == 403
    assert live.channel.poll_controls() == []


def test_a_request_without_any_host_header_gets_403(live):
    assert raw(live, b"GET / HTTP/1.0\r\n\r\n")[0] == 403


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}"])
def test_this_servers_own_names_are_served(live, host):
    status, headers, body = request(live, "GET", "/", host=host.format(port=live.port))
    assert status == 200 and body == (PAGE / "index.html").read_bytes()
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_a_cross_origin_post_is_refused_even_with_the_token(live):
    origin = {"Origin": "http://evil.example"}
    assert control(live, token=live.token, headers=origin)[0] == 403
    same = {"Origin": f"http://127.0.0.1:{live.port}"}
    assert control(live, token=live.token, headers=same)[0] == 202


@pytest.mark.parametrize("path", ["/static/../server.py", "/static/%2e%2e/server.py",
                                  "/static/..%2fserver.py", "/static/%2e%2e%2f%2e%2e%2fpyproject.toml",
                                  "/static//etc/passwd", "/static/%2Fetc%2Fpasswd",
                                  "/static/..\\server.py", "/static/app.js%00.png", "/static/",
                                  "/static/../../../../../../etc/passwd"])
def test_static_files_cannot_leave_their_folder(live, path):
    status, body = raw(live, f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{live.port}\r\n\r\n"
                       .encode())
    assert status == 404 and b"root:" not in body and b"import" not in body


def test_symlinks_in_the_page_folder_are_resolved(tmp_path):
    page, outside = tmp_path / "page", tmp_path / "secret.js"
    page.mkdir()
    (page / "index.html").write_text("<p>hi</p>")
    (page / "real.js").write_text("ok();")
    outside.write_text("secret();")
    (page / "inside.js").symlink_to(page / "real.js")
    (page / "escape.js").symlink_to(outside)
    (page / "up").symlink_to(tmp_path)
    with LiveServer(page=page) as server:
        assert request(server, "GET", "/static/inside.js")[2] == b"ok();"
        assert request(server, "GET", "/static/escape.js")[0] == 404
        assert request(server, "GET", "/static/up/secret.js")[0] == 404


def test_oversized_bodies_are_refused_before_they_are_read(live):
    huge = (f"POST /api/probe HTTP/1.0\r\nHost: 127.0.0.1:{live.port}\r\n{TOKEN_HEADER}: "
            f"{live.token}\r\nContent-Length: {1 << 30}\r\n\r\n").encode()
    status, body = raw(live, huge)  # 1 GiB announced, nothing sent: answered at once
    assert status == 413 and b"over the limit" in body
    status, _, body = request(live, "POST", "/api/probe", b"x" * (live.max_upload + 1),
                              token=live.token)
    assert status == 413
    status, _, body = request(live, "POST", "/api/control", b" " * (MAX_CONTROL_BYTES + 1),
                              token=live.token)
    assert status == 413
    no_length = (f"POST /api/probe HTTP/1.0\r\nHost: 127.0.0.1:{live.port}\r\n{TOKEN_HEADER}: "
                 f"{live.token}\r\n\r\n").encode()
    assert raw(live, no_length)[0] == 411
    chunked = no_length.replace(b"\r\n\r\n", b"\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert raw(live, chunked)[0] == 411
    assert live.spy.calls == 0


@pytest.mark.parametrize("upload, words", [
    (png_claiming(9_000, 9_000), "pixels exceeds the limit"),  # cnnlab's own header check
    (png_claiming(50_000, 50_000), "cannot decode"),  # PIL's bomb guard, also a DataError
    (b"not an image at all", "cannot decode"),
    (small_png()[:60], "cannot decode"),  # truncated
    (b"", "empty upload"),
], ids=["too-many-pixels", "pil-bomb", "not-an-image", "truncated", "empty"])
def test_bad_uploads_are_400_with_a_message_and_the_server_lives_on(live, upload, words):
    status, _, body = request(live, "POST", "/api/probe", upload, token=live.token)
    message = json.loads(body)["error"]
    assert status == 400 and words in message and "/tmp" not in message
    assert request(live, "GET", "/api/info")[0] == 200
    assert live.logged == []  # a user's mistake is not a server error


def test_a_probe_that_crashes_is_a_500_and_the_server_lives_on():
    def broken(data: bytes) -> dict:
        raise RuntimeError("boom")

    logged = []
    with LiveServer(probe=broken, log=logged.append) as server:
        status, _, body = request(server, "POST", "/api/probe", small_png(), token=server.token)
        assert status == 500 and "RuntimeError" in json.loads(body)["error"]
        assert "boom" in logged[0]
        assert request(server, "GET", "/api/info")[0] == 200


def test_a_good_upload_is_probed(live):
    status, _, body = request(live, "POST", "/api/probe", small_png(), token=live.token)
    result = json.loads(body)
    assert status == 200 and live.spy.calls == 1
    assert len(result["probabilities"]) == 10 and abs(sum(result["probabilities"]) - 1) < 1e-5


def test_unknown_routes_and_methods(live):
    assert request(live, "GET", "/nothing")[0] == 404
    assert request(live, "GET", "/api/control")[0] == 405
    assert request(live, "POST", "/api/info", b"", token=live.token)[0] == 405
    assert request(live, "GET", "/api/runs")[0] == 404  # no runs folder in this server


class Stream:
    """An open ``GET /events`` on a raw socket; :meth:`until` reads on until a condition on
    every event received so far holds."""

    def __init__(self, server: LiveServer) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        self.sock.sendall(f"GET /events HTTP/1.0\r\nHost: 127.0.0.1:{server.port}\r\n\r\n"
                          .encode())
        self.text = ""

    def until(self, condition) -> list[dict]:
        while True:
            events = parse_sse(self.text.partition("\r\n\r\n")[2])
            if condition(events):
                return events
            chunk = self.sock.recv(1 << 16)
            assert chunk, "the stream ended"
            self.text += chunk.decode()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def test_events_stream_as_server_sent_events(live):
    live.channel.publish("status", {"state": "starting"})
    with Stream(live) as stream:
        stream.until(lambda e: len(e) >= 1)
        live.channel.publish("scalars", {"step": 1, "loss": 2.0})
        events = stream.until(lambda e: len(e) >= 2)
    assert events[0]["event"] == "replay"
    assert json.loads(events[0]["data"]) == {"events": [["status", {"state": "starting"}]]}
    assert events[1] == {"event": "scalars", "id": "2", "data": '{"step":1,"loss":2.0}'}


def test_every_frame_is_delivered_or_counted_as_dropped_and_the_page_is_told():
    channel = LiveChannel(queue_frames=4)
    with LiveServer(channel=channel) as server, Stream(server) as stream:
        stream.until(lambda e: len(e) >= 1)  # the replay: the stream is open
        blob = "x" * (1 << 16)
        for step in range(1, 301):  # ~20 MB: more than the socket buffers hold
            channel.publish("scalars", {"step": step, "blob": blob})
        events = stream.until(lambda e: any(x.get("id") == "300" for x in e))
        steps = [json.loads(e["data"])["step"] for e in events if e["event"] == "scalars"]
        told = [json.loads(e["data"])["dropped"] for e in events if e["event"] == "dropped"]
        dropped = channel.stats()["dropped"]
    assert steps == sorted(steps) and steps[-1] == 300
    assert dropped > 0 and len(steps) + dropped == 300  # nothing lost without being counted
    assert told and told[-1] == dropped and told == sorted(told)


def test_a_page_that_stops_reading_never_blocks_the_publisher():
    channel = LiveChannel(queue_frames=8)
    with LiveServer(channel=channel) as server, Stream(server):  # connected, never read
        blob = "y" * (1 << 16)
        publisher = threading.Thread(target=lambda: [channel.publish("maps", {"i": i, "b": blob})
                                                     for i in range(2000)])
        publisher.start()
        publisher.join(timeout=120)  # 130 MB of frames: only possible if nothing waits
        assert not publisher.is_alive()
        assert channel.stats()["published"] == 2000 and channel.stats()["dropped"] > 1000
        with Stream(server) as fresh:  # the server still serves new pages
            (replay,) = fresh.until(lambda e: len(e) >= 1)[:1]
        assert json.loads(replay["data"])["events"][0][1]["i"] == 1999


def test_a_page_that_went_away_does_not_disturb_the_others(live):
    with Stream(live) as gone:
        gone.until(lambda e: len(e) >= 1)
    for step in range(200):
        live.channel.publish("scalars", {"step": step})
    with Stream(live) as fresh:
        events = fresh.until(lambda e: len(e) >= 1)
    assert len(json.loads(events[0]["data"])["events"]) == 200


def test_closing_the_server_ends_open_streams():
    server = LiveServer(channel=LiveChannel()).start()
    stream = Stream(server)
    stream.until(lambda e: len(e) >= 1)
    server.close()
    rest = b""
    while chunk := stream.sock.recv(1 << 16):
        rest += chunk
    stream.sock.close()
    assert b"event:" not in rest  # ended, nothing more sent
