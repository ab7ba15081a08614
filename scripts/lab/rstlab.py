"""Building blocks for the Linux TCP-reset fixture lab (python3 stdlib only).

* network namespaces entered per thread with setns(2), so one process can own
  sockets in both the client and the server namespace;
* a live reader for the pcap that tcpdump is writing (``-U --immediate-mode``),
  from which the lab takes the real sequence numbers for its spoofed segments
  and finds the frame number of every RST;
* hand-built IPv4/TCP segments sent through an IPPROTO_RAW socket;
* the kernel's own view of a socket (TCP_INFO state, SO_ERROR).

Nothing here sends a packet anywhere but to the addresses the caller names, and
the caller only names addresses inside the lab's namespaces.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import select
import signal
import socket
import struct
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

TCP_STATES = {
    1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
    6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN",
    11: "CLOSING", 12: "NEW_SYN_RECV",
}

MASK32 = 0xFFFFFFFF


def seq_add(a: int, n: int) -> int:
    return (a + n) & MASK32


def seq_diff(a: int, b: int) -> int:
    """a - b in sequence space, as a signed 32-bit number."""
    d = (a - b) & MASK32
    return d - (1 << 32) if d >= 1 << 31 else d


def flag_str(flags: int) -> str:
    """tcpdump's spelling: S, F, R, P, '.' for ACK."""
    out = "".join(c for bit, c in ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P")) if flags & bit)
    if flags & ACK:
        out += "."
    return out or "none"


# --------------------------------------------------------------------------
# network namespaces
# --------------------------------------------------------------------------

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_HOME_NS = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "setns: " + os.strerror(e))


class Netns:
    """A named namespace (``ip netns add``) with one veth end and one address."""

    def __init__(self, name: str, iface: str, ip: str):
        self.name, self.iface, self.ip = name, iface, ip
        self.fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
        self._raw: socket.socket | None = None
        self._ip_id = 0x5200

    @contextmanager
    def entered(self):
        """Run the block with this thread in the namespace. Sockets created
        inside stay in the namespace for their whole life."""
        _setns(self.fd)
        try:
            yield
        finally:
            _setns(_HOME_NS)

    def socket(self, *args) -> socket.socket:
        with self.entered():
            return socket.socket(*args)

    def run(self, *argv: str) -> str:
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], check=True,
                              capture_output=True, text=True).stdout

    def disable_tx_offloads(self) -> None:
        """Turn off TX checksum offload (and with it TSO) on the veth, so the
        capture holds correct TCP checksums and MSS-sized segments instead of
        CHECKSUM_PARTIAL placeholders and 64 KB super-segments."""
        SIOCETHTOOL, ETHTOOL_GTXCSUM, ETHTOOL_STXCSUM = 0x8946, 0x16, 0x17
        s = self.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for cmd in (ETHTOOL_STXCSUM, ETHTOOL_GTXCSUM):
                val = ctypes.create_string_buffer(struct.pack("II", cmd, 0))
                ifr = struct.pack("16sP", self.iface.encode(), ctypes.addressof(val)).ljust(40, b"\0")
                fcntl.ioctl(s, SIOCETHTOOL, ifr)
            if struct.unpack("II", val.raw[:8])[1] != 0:
                raise RuntimeError(f"tx checksum offload still on for {self.iface}")
        finally:
            s.close()

    # ---- spoofed segments -------------------------------------------------

    def send_tcp(self, src: tuple[str, int], dst: tuple[str, int], seq: int, ack: int,
                 flags: int, window: int = 0, payload: bytes = b"") -> bytes:
        """Send one hand-made IPv4/TCP segment from this namespace (IP_HDRINCL
        via IPPROTO_RAW). The source may be any address; only lab addresses are
        ever passed. Returns the bytes sent (IP header included)."""
        if self._raw is None:
            self._raw = self.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self._ip_id = (self._ip_id + 1) & 0xFFFF
        tcp = struct.pack("!HHIIBBHHH", src[1], dst[1], seq & MASK32, ack & MASK32,
                          5 << 4, flags, window, 0, 0) + payload
        pseudo = socket.inet_aton(src[0]) + socket.inet_aton(dst[0]) + struct.pack("!BBH", 0, 6, len(tcp))
        tcp = tcp[:16] + struct.pack("!H", inet_checksum(pseudo + tcp)) + tcp[18:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), self._ip_id, 0x4000, 64, 6, 0,
                         socket.inet_aton(src[0]), socket.inet_aton(dst[0]))
        ip = ip[:10] + struct.pack("!H", inet_checksum(ip)) + ip[12:]
        self._raw.sendto(ip + tcp, (dst[0], 0))
        return ip + tcp


def inet_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


# --------------------------------------------------------------------------
# kernel socket state
# --------------------------------------------------------------------------

def tcp_state(s: socket.socket) -> str:
    try:
        info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    except OSError as e:
        return f"?({errno.errorcode.get(e.errno, e.errno)})"
    return TCP_STATES.get(info[0], f"?{info[0]}")


def so_error(s: socket.socket) -> str:
    """Read (and clear) the pending socket error: '0' or an errno name."""
    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    return errno.errorcode.get(err, str(err)) if err else "0"


def try_recv(s: socket.socket) -> str:
    """What a non-blocking recv() says right now, as a short phrase."""
    try:
        data = s.recv(4096, socket.MSG_DONTWAIT)
    except BlockingIOError:
        return "recv would block"
    except OSError as e:
        return f"recv raised {errno.errorcode.get(e.errno, e.errno)}"
    return f"recv returned {len(data)} bytes" if data else "recv returned EOF"


def linger0(s: socket.socket) -> None:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def queued_in(s: socket.socket) -> int:
    """Bytes in the receive queue (FIONREAD/SIOCINQ)."""
    buf = fcntl.ioctl(s, 0x541B, b"\0\0\0\0")
    return struct.unpack("i", buf)[0]


# --------------------------------------------------------------------------
# pcap
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Frame:
    no: int            # 1-based, as tcpdump/wireshark count
    ts: float
    src: str
    dst: str
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    win: int
    plen: int
    wscale: int | None  # window-scale option, if present
    csum_ok: bool

    @property
    def a(self) -> tuple[str, int]:
        return (self.src, self.sport)

    @property
    def b(self) -> tuple[str, int]:
        return (self.dst, self.dport)

    def is_(self, src: tuple[str, int], dst: tuple[str, int]) -> bool:
        return self.a == src and self.b == dst

    @property
    def end_seq(self) -> int:
        return seq_add(self.seq, self.plen + bool(self.flags & SYN) + bool(self.flags & FIN))

    def __str__(self) -> str:
        return (f"#{self.no} {self.src}.{self.sport} > {self.dst}.{self.dport} [{flag_str(self.flags)}] "
                f"seq {self.seq} ack {self.ack} win {self.win} len {self.plen}")


def read_pcap(path: str) -> tuple[list[Frame], int]:
    """All IPv4/TCP frames of an Ethernet pcap, and the total frame count.
    A record still being written at the end is ignored."""
    frames: list[Frame] = []
    raw = read_pcap_raw(path)
    for n, (ts, pkt) in enumerate(raw, 1):
        fr = _parse_eth_ipv4_tcp(pkt, n, ts)
        if fr is not None:
            frames.append(fr)
    return frames, len(raw)


def read_pcap_raw(path: str) -> list[tuple[float, bytes]]:
    """(timestamp, bytes) of every complete record of an Ethernet pcap."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    if len(data) < 24:
        return []
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        raise ValueError(f"{path}: not a pcap file")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(e + "I", data[20:24])[0]
    if linktype != 1:
        raise ValueError(f"{path}: link type {linktype}, expected Ethernet")
    out = []
    off = 24
    while off + 16 <= len(data):
        ts_s, ts_frac, incl, _orig = struct.unpack(e + "IIII", data[off:off + 16])
        if off + 16 + incl > len(data):
            break
        out.append((ts_s + ts_frac / (1e9 if nano else 1e6), data[off + 16:off + 16 + incl]))
        off += 16 + incl
    return out


def _parse_eth_ipv4_tcp(pkt: bytes, no: int, ts: float) -> Frame | None:
    if len(pkt) < 14 + 20 or pkt[12:14] != b"\x08\x00":
        return None
    ip = pkt[14:]
    ihl = (ip[0] & 0x0F) * 4
    total = struct.unpack("!H", ip[2:4])[0]
    if ip[0] >> 4 != 4 or ip[9] != 6 or len(ip) < total or total < ihl + 20:
        return None
    tcp = ip[ihl:total]
    sport, dport, seq, ack, off_b, flags, win = struct.unpack("!HHIIBBH", tcp[:16])
    doff = (off_b >> 4) * 4
    wscale = None
    opts = tcp[20:doff]
    i = 0
    while i < len(opts):
        kind = opts[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(opts) or opts[i + 1] < 2:
            break
        if kind == 3 and opts[i + 1] == 3:
            wscale = opts[i + 2]
        i += opts[i + 1]
    src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
    pseudo = ip[12:20] + struct.pack("!BBH", 0, 6, len(tcp))
    return Frame(no, ts, src, dst, sport, dport, seq, ack, flags, win, len(tcp) - doff, wscale,
                 inet_checksum(pseudo + tcp) == 0)


@dataclass
class Side:
    """One endpoint's TCP state as the wire shows it (RST segments ignored)."""
    snd_nxt: int | None = None
    rcv_nxt: int | None = None      # the highest ack it has sent
    win_raw: int | None = None      # window field of its latest segment
    wscale: int | None = None       # its receive window scale, when both SYNs were seen
    fin_sent: bool = False

    @property
    def window(self) -> int:
        return self.win_raw << self.wscale if self.wscale is not None else self.win_raw


def side(frames: list[Frame], me: tuple[str, int], peer: tuple[str, int]) -> Side:
    st = Side()
    my_ws = peer_ws = None
    last_was_syn = False
    for f in frames:
        if f.flags & RST:
            continue
        if f.is_(me, peer):
            if st.snd_nxt is None or seq_diff(f.end_seq, st.snd_nxt) > 0:
                st.snd_nxt = f.end_seq
            if f.flags & ACK and (st.rcv_nxt is None or seq_diff(f.ack, st.rcv_nxt) > 0):
                st.rcv_nxt = f.ack
            if f.flags & SYN:
                my_ws = f.wscale
            st.fin_sent |= bool(f.flags & FIN)
            st.win_raw = f.win
            last_was_syn = bool(f.flags & SYN)
        elif f.is_(peer, me) and f.flags & SYN:
            peer_ws = f.wscale
    if my_ws is not None and peer_ws is not None and not last_was_syn:
        st.wscale = my_ws
    return st


class Capture:
    """tcpdump writing a pcap inside a namespace, readable while it runs.

    tcpdump writes each packet a little after the kernel has passed it on, so
    a pcap read right after a socket call can be stale. An AF_PACKET socket of
    our own on the same interface sees every packet at the same instant as
    tcpdump's; `frames()` drains it and waits until the pcap holds at least as
    many frames, so what it returns is never older than the sockets' state.
    """

    def __init__(self, ns: Netns, path: str):
        self.ns, self.path = ns, path
        ETH_P_ALL, SO_RCVBUFFORCE = 0x0003, 33
        self.tap = ns.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.tap.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
        self.tap.bind((ns.iface, 0))
        self.tap.setblocking(False)
        self.seen: list[bytes] = []
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns.name, "tcpdump", "-i", ns.iface, "-w", path, "-U",
             "--immediate-mode", "-n", "-s", "0", "-Z", "root", "ip"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.stderr = b""
        deadline = time.monotonic() + 10
        while b"listening on" not in self.stderr:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.proc.kill()
                raise RuntimeError(f"tcpdump did not start: {self.stderr.decode(errors='replace')}")
            r, _, _ = select.select([self.proc.stderr], [], [], left)
            if r:
                self.stderr += os.read(self.proc.stderr.fileno(), 4096)
        self._drain()
        self.seen.clear()  # tcpdump is attached: from here on both see the same

    def _drain(self) -> None:
        while True:
            try:
                pkt = self.tap.recv(65535)
            except BlockingIOError:
                return
            if pkt[12:14] == b"\x08\x00":  # tcpdump's filter is "ip"
                self.seen.append(pkt)

    def _synced(self) -> tuple[list[Frame], int]:
        self._drain()
        want = len(self.seen)
        # Generous: on a loaded machine (CI runs tests side by side on two
        # cores) tcpdump can fall seconds behind.
        deadline = time.monotonic() + 20
        while True:
            frames, n = read_pcap(self.path)
            if n >= want:
                return frames, n
            if time.monotonic() > deadline:
                raise RuntimeError(f"tcpdump is {want - n} packets behind the tap")
            time.sleep(0.005)

    def frames(self) -> list[Frame]:
        return self._synced()[0]

    def last_no(self) -> int:
        return self._synced()[1]

    def wait_for(self, pred, what: str, after: int = 0, timeout: float = 10.0) -> Frame:
        deadline = time.monotonic() + timeout
        while True:
            for f in self.frames():
                if f.no > after and pred(f):
                    return f
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.path}: no frame after #{after} for: {what}")
            time.sleep(0.02)

    def frames_after(self, no: int, within: float) -> list[Frame]:
        """Frames after #no, once `within` seconds have passed since it was captured."""
        time.sleep(within)
        return [f for f in self.frames() if f.no > no]

    def stop(self) -> str:
        """Stop tcpdump; returns its closing statistics. Fails if it dropped packets."""
        time.sleep(0.2)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        self.stderr += err
        text = self.stderr.decode(errors="replace")
        for line in text.splitlines():
            if "dropped by kernel" in line and not line.strip().startswith("0 "):
                raise RuntimeError(f"tcpdump dropped packets: {line.strip()}")
        # The pcap must hold exactly what the tap saw (order may differ only
        # where two CPUs delivered packets at the same instant).
        self._drain()
        self.tap.close()
        got = sorted(pkt for _, pkt in read_pcap_raw(self.path))
        if got != sorted(self.seen):
            raise RuntimeError(f"{self.path}: pcap ({len(got)} frames) differs from the tap ({len(self.seen)})")
        return text
