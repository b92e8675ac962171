"""A multi-node Ray cluster on one machine, on loopback: a head and worker nodes, each a separate Ray node
started with `ray start`, with its own ports, temp dir and resources (Ray's own tests fake a cluster the
same way, in-process, with ray.cluster_utils). Used by the Ray tests and bench/bench_multinode.py.

Everything is found, stopped and killed by PID: a node's processes are those whose command line names its
private temp dir, and their descendants. Never `ray stop`, which stops every Ray on the machine.

Addresses: every node's address is 127.0.0.1 and every socket listens there only. On Linux Ray replaces
127.0.0.1 by the machine's outward address wherever it meets it (--node-ip-address, --address), and its
servers then listen on every interface. The head runs in Ray's single-node mode
(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, as vaeflow's own local Ray), inherited by all its processes and by the
jobs it runs. A plain `ray start --address=127.0.0.1:PORT` would still rewrite the address and retry the
outward one for ever, so a worker node runs Ray's own `ray start` with that one replacement switched off
(WORKER_START).
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

RAY = str(Path(sys.executable).parent / "ray")
# `ray start` for a worker node, keeping 127.0.0.1 as given (see the module's docstring).
WORKER_START = [sys.executable, "-c", "import sys, ray._private.services as s; s.resolve_ip_for_localhost = "
                "lambda host: host; from ray.scripts.scripts import main; sys.argv[0] = 'ray'; main()"]


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@dataclass
class Node:
    name: str
    temp_dir: str
    head: bool
    node_id: str = ""
    pids: dict[int, float] = field(default_factory=dict)  # every process ever seen: pid -> its create time

    def processes(self) -> list[psutil.Process]:
        """This node's live processes: those naming its temp dir, and all their descendants."""
        mine = []
        for p in psutil.process_iter(["cmdline"]):
            if self.temp_dir in " ".join(p.info["cmdline"] or []):
                mine.append(p)
        kids = [c for p in mine for c in _children(p)]
        procs = list({p.pid: p for p in mine + kids}.values())
        for p in procs:
            try:
                self.pids.setdefault(p.pid, p.create_time())
            except psutil.NoSuchProcess:
                pass
        return procs


def _children(p: psutil.Process) -> list[psutil.Process]:
    try:
        return p.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


class LoopbackCluster:
    """`with LoopbackCluster() as c: c.add_node(...)`; the head starts on entry, everything stops on exit."""

    def __init__(self, head_cpus: float = 1, head_resources: str | None = None):
        self.token = secrets.token_hex(32)
        self.env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
                    "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}
        self.env.pop("RAY_AUTH_TOKEN_PATH", None)
        self.env.pop("RAY_ADDRESS", None)
        self.nodes: list[Node] = []
        self.head_cpus, self.head_resources = head_cpus, head_resources
        self.gcs_port = self.dashboard_port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @contextlib.contextmanager
    def driver(self) -> Iterator[None]:
        """This process as a driver of the cluster: its token in the environment. Ray caches the token it
        first loaded (another test's local Ray may have loaded ~/.ray/auth_token), so the cache is reset on
        the way in and out."""
        from ray._private.authentication_test_utils import reset_auth_token_state

        saved = dict(os.environ)
        os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=self.token)
        os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
        reset_auth_token_state()
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)
            reset_auth_token_state()

    def __enter__(self) -> LoopbackCluster:
        try:
            self.gcs_port, self.dashboard_port, client = free_ports(3)
            self._start("head", True, self.head_cpus, self.head_resources,
                        ["--head", f"--port={self.gcs_port}", "--dashboard-host=127.0.0.1", "--include-dashboard=true",
                         f"--dashboard-port={self.dashboard_port}", f"--ray-client-server-port={client}"],
                        {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}, [RAY])
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_node(self, num_cpus: float = 1, resources: str | None = None) -> Node:
        return self._start(f"node{len(self.nodes)}", False, num_cpus, resources, [f"--address={self.address}"], {},
                           WORKER_START)

    def _start(self, name: str, head: bool, cpus: float, resources: str | None, extra: list[str],
               env: dict[str, str], ray: list[str]) -> Node:
        agent, agent_grpc, env_agent, metrics = free_ports(4)  # the agents' defaults are fixed: one per node
        # Short: Ray's Unix socket paths under it must fit in 107 bytes.
        node = Node(name, tempfile.mkdtemp(prefix=f"vf{name[:2]}", dir="/tmp"), head)
        self.nodes.append(node)
        cmd = [*ray, "start", *extra, "--node-ip-address=127.0.0.1", f"--num-cpus={cpus}", "--num-gpus=0",
               f"--temp-dir={node.temp_dir}",
               f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
               f"--runtime-env-agent-port={env_agent}", f"--metrics-export-port={metrics}",
               "--disable-usage-stats", *([f"--resources={resources}"] if resources else [])]
        res = subprocess.run(cmd, env={**self.env, **env}, capture_output=True, text=True, timeout=240)
        if res.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
        node.node_id = self._node_id(node)
        return node

    def _node_id(self, node: Node) -> str:
        """The node's id, from its raylet's command line (so no driver has to connect to find it)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for p in node.processes():
                for a in _cmdline(p):
                    if a.startswith("--node_id="):
                        return a.split("=", 1)[1]
            time.sleep(0.5)
        raise RuntimeError(f"no raylet found for {node.name} in {node.temp_dir}")

    def kill_node(self, node: Node) -> list[int]:
        """SIGKILL the node's raylet and every process of the node (workers, agents, log monitor), by PID:
        what a machine that loses power looks like to the rest of the cluster."""
        procs = node.processes()
        for p in procs:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=10)
        return [p.pid for p in procs]

    def stop(self) -> None:
        """Stop this cluster's nodes, workers first, and only them; then remove their temp dirs."""
        for node in reversed(self.nodes):
            procs = node.processes()
            for p in procs:
                try:
                    p.terminate()
                except psutil.NoSuchProcess:
                    pass
            _, alive = psutil.wait_procs(procs, timeout=5)
            for p in alive:
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    pass
            psutil.wait_procs(alive, timeout=10)
        for node in self.nodes:
            shutil.rmtree(node.temp_dir, ignore_errors=True)

    def alive(self) -> list[int]:
        """PIDs of anything this cluster ever started that still runs (for the test's own clean-up check)."""
        return [pid for n in self.nodes for pid, t in n.pids.items() if _same_process(pid, t)]


def _same_process(pid: int, created: float) -> bool:
    try:
        p = psutil.Process(pid)
        return p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []
