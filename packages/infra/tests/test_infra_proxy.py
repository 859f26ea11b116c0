"""TcpProxy: forwards bytes, cuts connections on pause, and lets a broker come back intact."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from cryptopipe.infra.proxy import TcpProxy
from cryptopipe.infra.testing import ProxiedKafka, create_topic, eventually

pytestmark = pytest.mark.slow


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        with contextlib.suppress(OSError):
            while data := self.request.recv(4096):
                self.request.sendall(data)


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether the peer has closed or reset ``sock`` (reading gives EOF or an error)."""
    sock.settimeout(10)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def _reset_on_connect(port: int) -> bool:
    """Whether a new connection to ``port`` is closed or reset by the peer.

    On a loaded machine the reset can land before ``connect`` returns, which then raises it.
    """
    try:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            return _closed_by_peer(sock)
    except ConnectionResetError:
        return True


def _echo(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    sock.settimeout(10)
    received = b""
    while len(received) < len(payload):
        chunk = sock.recv(4096)
        if not chunk:
            break
        received += chunk
    return received


def test_forwards_and_cuts_connections_on_pause(echo_port: int) -> None:
    with TcpProxy(("127.0.0.1", echo_port)) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port)) as before:
            assert _echo(before, b"ping") == b"ping"
            assert proxy.active_connections == 1
            proxy.pause()
            assert proxy.paused
            assert _closed_by_peer(before)
        assert _reset_on_connect(proxy.port)
        assert proxy.stats.refused == 1
        proxy.resume()
        with socket.create_connection(("127.0.0.1", proxy.port)) as after:
            assert _echo(after, b"pong" * 10_000) == b"pong" * 10_000
        assert proxy.stats.forwarded == 2
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=2).close()


def test_blackhole_holds_new_connections_until_resume(echo_port: int) -> None:
    with TcpProxy(("127.0.0.1", echo_port)) as proxy:
        proxy.pause("blackhole")
        with socket.create_connection(("127.0.0.1", proxy.port)) as held:
            held.sendall(b"anyone?")
            eventually(lambda: proxy.stats.held == 1, timeout=10, message="connection not held")
            proxy.resume()
            assert _closed_by_peer(held)
        with socket.create_connection(("127.0.0.1", proxy.port)) as after:
            assert _echo(after, b"back") == b"back"


def test_unreachable_target_resets_the_client() -> None:
    with TcpProxy() as proxy:
        assert _reset_on_connect(proxy.port)


def test_idempotent_producer_buffers_through_an_outage_and_delivers_exactly_once(
    proxied_kafka: ProxiedKafka,
) -> None:
    endpoint, proxy = proxied_kafka.endpoint, proxied_kafka.proxy
    topic = create_topic(endpoint, endpoint.settings.topic_prefix + "outage", partitions=1)
    half = 200
    delivered: list[int] = []
    failed: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            failed.append(err)
        else:
            delivered.append(int(msg.value()))

    producer = Producer(
        {
            **endpoint.settings.client_config(),
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.timeout.ms": 120_000,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
        }
    )
    for i in range(half):
        producer.produce(topic, str(i).encode(), on_delivery=on_delivery)
    assert producer.flush(30) == 0

    proxy.pause()
    for i in range(half, 2 * half):
        producer.produce(topic, str(i).encode(), on_delivery=on_delivery)

    def reconnects_refused() -> bool:
        producer.poll(0.05)
        return proxy.stats.refused >= 5

    eventually(reconnects_refused, timeout=60, message="producer never tried to reconnect")
    assert len(producer) == half, "messages were delivered while the broker was unreachable"
    assert len(delivered) == half

    proxy.resume()
    assert producer.flush(60) == 0
    assert failed == []
    assert sorted(delivered) == list(range(2 * half))

    consumer = Consumer(
        {**endpoint.settings.client_config(), "group.id": "unused", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    sentinel = Producer(endpoint.settings.client_config())
    sentinel.produce(topic, b"end")
    assert sentinel.flush(30) == 0
    consumed: list[bytes] = []
    try:

        def reached_sentinel() -> bool:
            consumed.extend(m.value() for m in consumer.consume(1000, timeout=0.2) if m.error() is None)
            return bool(consumed) and consumed[-1] == b"end"

        eventually(
            reached_sentinel, timeout=60, message=f"sentinel not reached after {len(consumed)} messages"
        )
    finally:
        consumer.close()
    values = [int(v) for v in consumed[:-1]]
    assert len(values) == 2 * half
    assert values == list(range(2 * half))  # exactly once, in order, nothing lost from memory
