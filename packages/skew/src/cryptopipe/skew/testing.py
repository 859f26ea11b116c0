"""A tiny NTP server for tests and demos: answers client requests with a chosen clock offset.

No public NTP server is reachable from CI, so the NTP path is exercised against this
responder (a real UDP server in a thread, speaking RFC 5905's packet format)::

    with NtpResponder(offset_ms=250) as ntp:
        NtpReference("127.0.0.1", ntp.port)

A path and a clock can be simulated: ``request_delay_s`` / ``response_delay_s`` (callables, e.g.
a :class:`cryptopipe.replay.network.Sampler`'s) delay each direction, and ``clock_ns`` replaces the
offset clock (e.g. a drifting, stepping :class:`cryptopipe.replay.network.ServerClock`).

``behaviour`` can be switched at any time: ``"answer"``, ``"silent"`` (never replies),
``"kiss"`` (kiss-of-death, stratum 0), ``"unsynchronised"`` (leap = 3) or ``"stray_first"``
(sends a reply to some other request before the real one).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Literal

from cryptopipe.runtime.lifecycle import StartStop

Behaviour = Literal["answer", "silent", "kiss", "unsynchronised", "stray_first"]

_NTP_EPOCH_OFFSET_S = 2_208_988_800
_PACKET = struct.Struct("!B B b b I I 4s Q 8s Q Q")


def _to_ntp(unix_ns: int) -> int:
    seconds, rest = divmod(unix_ns, 1_000_000_000)
    return ((seconds + _NTP_EPOCH_OFFSET_S) << 32) | ((rest << 32) // 1_000_000_000)


class NtpResponder(StartStop):
    """An NTP server on ``host:port`` (port 0: any free port) whose clock is ``offset_ms`` ahead."""

    def __init__(
        self,
        offset_ms: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        request_delay_s: Callable[[], float] | None = None,
        response_delay_s: Callable[[], float] | None = None,
        clock_ns: Callable[[], int] | None = None,
    ) -> None:
        self.offset_ns = round(offset_ms * 1_000_000)
        self.request_delay_s = request_delay_s
        self.response_delay_s = response_delay_s
        self.clock_ns = clock_ns
        self.behaviour: Behaviour = "answer"
        self.requests = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((host, port))
        self._sock.settimeout(0.05)
        self.host, self.port = self._sock.getsockname()[:2]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"ntp-responder-{self.port}", daemon=True)

    def start(self) -> NtpResponder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def _now(self) -> int:
        return _to_ntp(self.clock_ns() if self.clock_ns is not None else time.time_ns() + self.offset_ns)

    def _reply(self, origin: bytes, received: int, leap: int = 0, stratum: int = 2) -> bytes:
        ref_id = b"RATE" if stratum == 0 else b"LOCL"
        return _PACKET.pack(
            leap << 6 | 4 << 3 | 4, stratum, 6, -20, 0, 0, ref_id, received, origin, received, self._now()
        )

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self._sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            if self.request_delay_s is not None:
                time.sleep(self.request_delay_s())  # the request arrives that much later
            received = self._now()
            self.requests += 1
            if len(data) < 48 or data[0] & 0x7 != 3:
                continue
            origin = data[40:48]
            behaviour = self.behaviour
            if behaviour == "silent":
                continue
            if behaviour == "stray_first":
                self._sock.sendto(self._reply(b"\x00" * 8, received), addr)
            leap, stratum = {"kiss": (0, 0), "unsynchronised": (3, 2)}.get(behaviour, (0, 2))
            reply = self._reply(origin, received, leap, stratum)
            if self.response_delay_s is not None:
                time.sleep(self.response_delay_s())  # the reply, stamped, is that long on the way
            self._sock.sendto(reply, addr)
