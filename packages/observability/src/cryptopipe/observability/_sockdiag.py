"""Per-socket TCP byte counters from Linux's sock_diag netlink interface.

psutil has no per-process network counters, and ``/proc/<pid>/net/dev`` describes the whole
network namespace, not the process. The kernel does keep, per TCP socket, ``tcpi_bytes_received``
and ``tcpi_bytes_acked`` (``struct tcp_info``, Linux >= 4.2); ``ss -ti`` shows them. Dumping every
TCP socket once per sample and mapping socket inodes to processes through ``/proc/<pid>/fd`` gives
per-process payload bytes without touching the services. Linux only; elsewhere the caller falls
back to host-wide counters.
"""

from __future__ import annotations

import os
import socket
import struct
import sys

_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 0x1
_NLM_F_DUMP = 0x300
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_INET_DIAG_INFO = 2
_ALL_STATES = 0xFFFFFFFF
_NLMSG_HEADER = struct.Struct("=IHHII")
_REQUEST = struct.Struct("=BBBBI48x")  # inet_diag_req_v2 with a zeroed inet_diag_sockid
_INODE_OFFSET = 68  # inet_diag_msg: 4 bytes + 48-byte sockid + expires, rqueue, wqueue, uid, *inode*
_MSG_SIZE = 72
_RTATTR = struct.Struct("=HH")
_TCP_INFO_BYTES = struct.Struct("=QQ")  # tcpi_bytes_acked, tcpi_bytes_received
_TCP_INFO_BYTES_OFFSET = 120


def supported() -> bool:
    return sys.platform.startswith("linux")


def _align(n: int) -> int:
    return (n + 3) & ~3


def tcp_bytes_by_inode() -> dict[int, tuple[int, int]]:
    """``{socket inode: (bytes received, bytes sent and acknowledged)}`` for every TCP socket.

    Raises OSError when netlink is unavailable (not Linux, or a sandbox forbids it).
    """
    out: dict[int, tuple[int, int]] = {}
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG) as nl:
        for seq, family in enumerate((socket.AF_INET, socket.AF_INET6), start=1):
            body = _REQUEST.pack(family, socket.IPPROTO_TCP, 1 << (_INET_DIAG_INFO - 1), 0, _ALL_STATES)
            header = _NLMSG_HEADER.pack(
                _NLMSG_HEADER.size + len(body), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST | _NLM_F_DUMP, seq, 0
            )
            nl.sendto(header + body, (0, 0))
            _read_dump(nl, out)
    return out


def _read_dump(nl: socket.socket, out: dict[int, tuple[int, int]]) -> None:
    while True:
        data = nl.recv(1 << 17)
        offset = 0
        while offset + _NLMSG_HEADER.size <= len(data):
            length, kind, _flags, _seq, _pid = _NLMSG_HEADER.unpack_from(data, offset)
            if length < _NLMSG_HEADER.size:
                return
            if kind == _NLMSG_DONE:
                return
            if kind == _NLMSG_ERROR:
                (errno,) = struct.unpack_from("=i", data, offset + _NLMSG_HEADER.size)
                raise OSError(-errno, "sock_diag dump failed")
            message = data[offset + _NLMSG_HEADER.size : offset + length]
            _parse_message(message, out)
            offset += _align(length)


def _parse_message(message: bytes, out: dict[int, tuple[int, int]]) -> None:
    if len(message) < _MSG_SIZE:
        return
    (inode,) = struct.unpack_from("=I", message, _INODE_OFFSET)
    attr = _MSG_SIZE
    while attr + _RTATTR.size <= len(message):
        length, kind = _RTATTR.unpack_from(message, attr)
        if length < _RTATTR.size:
            return
        if kind == _INET_DIAG_INFO and length - _RTATTR.size >= _TCP_INFO_BYTES_OFFSET + _TCP_INFO_BYTES.size:
            acked, received = _TCP_INFO_BYTES.unpack_from(
                message, attr + _RTATTR.size + _TCP_INFO_BYTES_OFFSET
            )
            if inode:
                out[inode] = (received, acked)
            return
        attr += _align(length)


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets a process holds open (empty if it is gone or not ours to inspect)."""
    inodes: set[int] = set()
    fd_dir = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return inodes
    for name in names:
        try:
            target = os.readlink(f"{fd_dir}/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes
