"""What listens where: the listening sockets of a process and everything it starts, sampled while it runs.

Ray's GCS, raylet, agents and workers, and Prefect's throwaway server, are descendants of the command that
starts them, so polling the process tree (psutil) sees every socket they open, however briefly they live.
A listening TCP socket and a bound UDP socket without a peer both count.
"""
from __future__ import annotations

import ipaddress
import subprocess
import threading
import time
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Listener:
    process: str  # a stable name: gcs_server, raylet, ray::<actor or task>, python <script>, ...
    proto: str  # tcp or udp
    ip: str
    port: int

    @property
    def loopback(self) -> bool:
        ip = ipaddress.ip_address(self.ip.split("%")[0])
        ip = getattr(ip, "ipv4_mapped", None) or ip  # ::ffff:127.0.0.1 (a dual-stack socket) is loopback
        return ip.is_loopback

    def __str__(self) -> str:
        return f"{self.process} {self.proto} {self.ip}:{self.port}"


def _name(p: psutil.Process) -> str:
    cmd = p.cmdline()
    if not cmd:
        return p.name()
    exe = cmd[0].rsplit("/", 1)[-1]
    if exe.startswith("python"):  # the script or module it runs, e.g. dashboard.py, flows.cli, uvicorn
        args = [a for a in cmd[1:] if not a.startswith("-")]
        return f"python {args[0].rsplit('/', 1)[-1]}" if args else exe
    return exe if not exe.startswith("ray::") else exe.split()[0]


def listeners(pid: int) -> set[Listener]:
    """The listening sockets, right now, of `pid` and all its descendants."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return set()
    out = set()
    for p in procs:
        try:
            name = _name(p)
            for c in p.net_connections(kind="inet"):
                tcp = c.type == 1  # SOCK_STREAM
                if (tcp and c.status == psutil.CONN_LISTEN) or (not tcp and not c.raddr):
                    out.add(Listener(name, "tcp" if tcp else "udp", c.laddr.ip, c.laddr.port))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return out


class Sampler:
    """Polls a running process's tree every `every` seconds and keeps the union of what listened."""

    def __init__(self, proc: subprocess.Popen, every: float = 0.2):
        self.proc, self.every, self.seen = proc, every, set()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while self.proc.poll() is None:
            self.seen |= listeners(self.proc.pid)
            time.sleep(self.every)

    def join(self) -> set[Listener]:
        self._thread.join()
        return self.seen
