"""A throw-away single-node SLURM cluster for the SLURM tests (Debian's slurm-wlm + munge, run as root).

Everything lives in one folder: a private munge key and socket, slurm.conf, state, spool, pid and
log files. The clients (sbatch, squeue, scancel and the Snakemake executor that calls them) find the
cluster through the SLURM_CONF variable of ``cluster.env``. One exception: inside a job, the
executor's job-step plugin starts ``srun`` with every SLURM_* variable removed, so that srun reads
the default /etc/slurm/slurm.conf. The cluster writes its config there while it runs (only when no
such file exists: a machine with a real SLURM is left alone) and removes it when it stops.
Accounting is off: job status comes from ``squeue``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "sinfo", "scancel", "srun")


def _binary(name: str) -> str | None:
    """The program's path; the daemons live in /usr/sbin, which a non-login PATH may lack."""
    return shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)


def missing_binaries() -> list[str]:
    return [name for name in (*DAEMONS, *CLIENTS) if not _binary(name)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mb() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


class SingleNodeCluster:
    """``with SingleNodeCluster(folder) as cluster:`` starts munged, slurmctld and slurmd; stops them after."""

    def __init__(self, folder: Path, partition: str = "ci"):
        self.folder = Path(folder)
        self.partition = partition
        self.node = socket.gethostname().split(".")[0]
        self.cpus = os.cpu_count() or 1
        self.processes: list[subprocess.Popen] = []

    SYSTEM_CONF = Path("/etc/slurm/slurm.conf")

    @property
    def conf(self) -> Path:
        return self.folder / "slurm.conf"

    @property
    def env(self) -> dict:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def write_config(self) -> None:
        f = self.folder
        for sub in ("state", "spool", "log", "munge"):
            (f / sub).mkdir(parents=True, exist_ok=True)
        key = f / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        # Leave ~1 GiB for the daemons; CR_Core: cores are the consumable, memory requests only need to fit.
        memory = max(1024, _memory_mb() - 1024)
        self.conf.write_text("\n".join([
            "ClusterName=genecompass-ci",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={f / 'munge' / 'munge.socket'}",
            f"StateSaveLocation={f / 'state'}",
            f"SlurmdSpoolDir={f / 'spool'}",
            f"SlurmctldPidFile={f / 'slurmctld.pid'}",
            f"SlurmdPidFile={f / 'slurmd.pid'}",
            f"SlurmctldLogFile={f / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={f / 'log' / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "MpiDefault=none",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            "ReturnToService=2",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=30",
            "InactiveLimit=0",
            "KillWait=5",
            "MinJobAge=300",
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={memory} State=UNKNOWN",
            f"PartitionName={self.partition} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]))

    def _start(self, *command: str) -> None:
        log = open(self.folder / "log" / f"{Path(command[0]).name}.out", "w")
        self.processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                               start_new_session=True))

    def start(self, timeout: float = 60.0) -> None:
        if self.SYSTEM_CONF.exists():
            raise RuntimeError(f"{self.SYSTEM_CONF} exists: this machine has its own SLURM; "
                               "the throw-away test cluster would clash with it")
        self.write_config()
        self.SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.conf, self.SYSTEM_CONF)
        self._wrote_system_conf = True
        m = self.folder / "munge"
        self._start(_binary("munged"), "--foreground", "--force", f"--key-file={m / 'munge.key'}",
                    f"--socket={m / 'munge.socket'}", f"--pid-file={m / 'munged.pid'}",
                    f"--log-file={m / 'munged.log'}", f"--seed-file={m / 'munged.seed'}")
        self._wait(lambda: (m / "munge.socket").exists(), timeout, "munged did not create its socket")
        self._start(_binary("slurmctld"), "-D", "-i", "-f", str(self.conf))
        self._start(_binary("slurmd"), "-D", "-f", str(self.conf))
        self._wait(self.node_idle, timeout, "the node did not become idle")

    def node_idle(self) -> bool:
        result = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True,
                                env=self.env, timeout=30)
        return result.returncode == 0 and result.stdout.strip().rstrip("*") == "idle"

    def _wait(self, ready, timeout: float, message: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"{process.args[0]} exited with {process.returncode}:\n{self.logs()}")
            if ready():
                return
            time.sleep(0.5)
        raise RuntimeError(f"{message} within {timeout:.0f} s:\n{self.logs()}")

    def logs(self) -> str:
        parts = []
        for path in sorted((self.folder / "log").glob("*")) + sorted((self.folder / "munge").glob("*.log")):
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()
        if getattr(self, "_wrote_system_conf", False):
            self.SYSTEM_CONF.unlink(missing_ok=True)
            self._wrote_system_conf = False

    def __enter__(self) -> SingleNodeCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
