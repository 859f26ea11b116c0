"""Time references: Binance's ``GET /api/v3/time`` and NTP servers.

Each reference turns one request/reply exchange into a :class:`~cryptopipe.skew.estimate.Sample`
(NTP's four timestamps). Round trips are timed with ``time.perf_counter_ns`` and anchored to
the wall clock (``time.time_ns``) read just before sending, so a wall-clock step during a
request cannot distort the sample.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import struct
import time
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp
import msgspec
import ntplib

from cryptopipe.observability import metrics as m
from cryptopipe.schemas.binance import ServerTime
from cryptopipe.skew.errors import ReferenceUnavailable
from cryptopipe.skew.estimate import Sample

logger = logging.getLogger(__name__)

TIME_ENDPOINT = "/api/v3/time"
#: serverTime above this is microseconds (year 5138 in ms, 1973 in µs).
_MICROSECOND_THRESHOLD = 10**14
_NTP_EPOCH_OFFSET_S = 2_208_988_800  # 1900-01-01 to 1970-01-01
_NTP_PACKET = struct.Struct("!B B b b 11I")
_NS_PER_S = 1_000_000_000


class TimeReference(Protocol):
    """Something that can be asked for the time, one exchange at a time."""

    @property
    def name(self) -> str:
        """Short, stable label (metric label value, ``reference`` in estimates)."""
        ...

    @property
    def source(self) -> str:
        """Where it is (URL or host:port), for messages and JSON output."""
        ...

    async def sample(self) -> Sample:
        """One exchange; raises :class:`ReferenceUnavailable` when there is no usable answer."""
        ...

    async def close(self) -> None: ...


def _anchor() -> tuple[int, int]:
    """(wall ns, monotonic ns) read back to back."""
    return time.time_ns(), time.perf_counter_ns()


class BinanceTimeReference:
    """Binance's ``GET /api/v3/time`` (or any Binance-compatible REST base, e.g. the replay exchange).

    Asks for microseconds (request header ``X-MBX-TIME-UNIT: MICROSECOND``) and tells from the
    value's magnitude whether the server honoured it; plain milliseconds add up to ±0.5 ms.
    Binance's millisecond ``serverTime`` is truncated, so a stamp stands for the middle of its
    tick. Response times are observed in ``cryptopipe_api_response_seconds{endpoint}``. The
    session is reused (keep-alive), so only the first sample pays for connecting, and the
    minimum-delay selection discards it.
    """

    def __init__(
        self,
        rest_url: str = "https://api.binance.com",
        *,
        timeout_s: float = 2.0,
        session: aiohttp.ClientSession | None = None,
        name: str = "binance",
        microseconds: bool = True,
    ) -> None:
        self._base = rest_url.rstrip("/")
        parts = urlsplit(self._base)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"not an http(s) URL: {rest_url!r}")
        self._url = self._base + TIME_ENDPOINT
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session = session
        self._owns_session = session is None
        self._name = name
        self._headers = {"X-MBX-TIME-UNIT": "MICROSECOND"} if microseconds else {}
        #: Unit of the last answer: "MICROSECOND" or "MILLISECOND" (None before the first).
        self.time_unit: str | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def source(self) -> str:
        return self._base

    def _unavailable(self, reason: str, detail: str) -> ReferenceUnavailable:
        return ReferenceUnavailable(self._name, reason, f"{detail} ({self._url})")

    async def sample(self) -> Sample:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        wall0, pc0 = _anchor()
        try:
            async with self._session.get(self._url, headers=self._headers, timeout=self._timeout) as response:
                body = await response.read()
                pc3 = time.perf_counter_ns()
                status = response.status
        except TimeoutError:
            raise self._unavailable("timeout", f"no answer within {self._timeout.total} s") from None
        except aiohttp.ClientError as exc:
            raise self._unavailable("connection", str(exc) or type(exc).__name__) from exc
        m.API_RESPONSE.labels(endpoint=TIME_ENDPOINT).observe((pc3 - pc0) / _NS_PER_S)
        if status != 200:
            raise self._unavailable("http_status", f"HTTP {status}: {body[:200]!r}")
        try:
            server_time = msgspec.json.decode(body, type=ServerTime).serverTime
        except msgspec.DecodeError as exc:
            raise self._unavailable("bad_response", f"{exc}: {body[:200]!r}") from exc
        if server_time > _MICROSECOND_THRESHOLD:
            self.time_unit, unit_ns = "MICROSECOND", 1_000
        else:
            self.time_unit, unit_ns = "MILLISECOND", 1_000_000
        stamp_ns = server_time * unit_ns + unit_ns // 2
        return Sample(wall0, stamp_ns, stamp_ns, wall0 + (pc3 - pc0), resolution_ns=unit_ns)

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None


class _NtpClientProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: asyncio.Queue[tuple[bytes, int] | Exception] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.replies.put_nowait((data, time.perf_counter_ns()))

    def error_received(self, exc: Exception) -> None:
        self.replies.put_nowait(exc)


def _ntp_to_unix_ns(seconds: int, fraction: int) -> int:
    return (seconds - _NTP_EPOCH_OFFSET_S) * _NS_PER_S + ((fraction * _NS_PER_S) >> 32)


class NtpReference:
    """An NTP server (SNTP client exchange, RFC 4330 / 5905), over asyncio UDP.

    Packets are built and read with ``ntplib``'s packet layout; the transmit timestamp is a
    random nonce (as chrony does), and a reply counts only if it echoes it, so a late answer to
    an earlier request is never mistaken for the current one. Kiss-of-death (stratum 0) and
    unsynchronised (leap = 3) replies are refused.
    """

    def __init__(
        self, server: str, port: int = 123, timeout_s: float = 1.0, *, name: str | None = None
    ) -> None:
        self._server = server
        self._port = port
        self._timeout_s = timeout_s
        self._name = name or f"ntp:{server}" + ("" if port == 123 else f":{port}")

    @property
    def name(self) -> str:
        return self._name

    @property
    def source(self) -> str:
        return f"{self._server}:{self._port}"

    def _unavailable(self, reason: str, detail: str) -> ReferenceUnavailable:
        return ReferenceUnavailable(self._name, reason, f"{detail} ({self.source})")

    async def sample(self) -> Sample:
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await loop.create_datagram_endpoint(
                _NtpClientProtocol, remote_addr=(self._server, self._port)
            )
        except OSError as exc:
            raise self._unavailable("connection", str(exc)) from exc
        try:
            return await asyncio.wait_for(self._exchange(transport, protocol), self._timeout_s)
        except TimeoutError:
            raise self._unavailable("timeout", f"no answer within {self._timeout_s} s") from None
        finally:
            transport.close()

    async def _exchange(self, transport: asyncio.DatagramTransport, protocol: _NtpClientProtocol) -> Sample:
        request = ntplib.NTPPacket(version=4, mode=3).to_data()
        nonce = secrets.token_bytes(8)
        request = request[:40] + nonce
        wall0, pc0 = _anchor()
        transport.sendto(request)
        while True:
            item = await protocol.replies.get()
            if isinstance(item, Exception):
                raise self._unavailable("connection", str(item) or type(item).__name__)
            data, pc3 = item
            if len(data) < _NTP_PACKET.size or data[24:32] != nonce:
                logger.debug("ignoring a stray or malformed NTP datagram from %s", self.source)
                continue
            packet = ntplib.NTPPacket()
            packet.from_data(data)
            if packet.mode != 4:
                logger.debug("ignoring an NTP datagram in mode %d from %s", packet.mode, self.source)
                continue
            if packet.stratum == 0:
                raise self._unavailable(
                    "ntp_kiss_of_death", f"kiss code {packet.ref_id.to_bytes(4, 'big')!r}"
                )
            if packet.leap == 3:
                raise self._unavailable("ntp_unsynchronised", "the server says its clock is not synchronised")
            fields = _NTP_PACKET.unpack(data[: _NTP_PACKET.size])
            t1 = _ntp_to_unix_ns(fields[11], fields[12])
            t2 = _ntp_to_unix_ns(fields[13], fields[14])
            return Sample(wall0, t1, t2, wall0 + (pc3 - pc0))

    async def close(self) -> None:
        return None
