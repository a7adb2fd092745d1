"""A real single-node Slurm on localhost for the tests: munge, slurmctld and slurmd, started when this machine can.

    cluster = start_cluster(folder)     # a LocalSlurm, or raises Unavailable saying why
    cluster.run(["sbatch", "study.sbatch"]) ...; cluster.stop()

Needs root and Debian's slurm-wlm and munge packages (apt-get install -y slurm-wlm munge). The cluster's own
configuration, state and logs live in `folder` (SLURM_CONF points there), on ports chosen free, so it touches no
system Slurm; munge uses the system's key (made if missing) and daemon (started if not running).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

MAX_ARRAY_SIZE = 4  # the cluster's MaxArraySize: small, so a test can see Slurm refuse a larger array (default 1001)


class Unavailable(Exception):
    """Why a local Slurm cannot run here."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def munge_works() -> bool:
    try:
        encoded = subprocess.run(["munge", "-n"], capture_output=True, timeout=10)
        decoded = subprocess.run(["unmunge"], input=encoded.stdout, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return encoded.returncode == 0 and b"Success" in decoded.stdout


def start_munge() -> int | None:
    """Start munged with the system key (written if missing); returns its pid when we started it."""
    if munge_works():
        return None
    key = Path("/etc/munge/munge.key")
    for folder in ("/etc/munge", "/run/munge", "/var/log/munge", "/var/lib/munge"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.chown(folder, "munge", "munge")
    if not key.exists():
        key.write_bytes(os.urandom(1024))
        shutil.chown(key, "munge", "munge")
        key.chmod(0o400)
    subprocess.run(["runuser", "-u", "munge", "--", "munged", "--force"], check=True, timeout=30)
    deadline = time.time() + 10
    while not munge_works():
        if time.time() > deadline:
            raise Unavailable("munged started but `munge -n | unmunge` does not succeed")
        time.sleep(0.2)
    pid_file = Path("/run/munge/munged.pid")
    return int(pid_file.read_text()) if pid_file.exists() else None


class LocalSlurm:
    def __init__(self, folder: Path):
        self.folder = folder
        self.env = {**os.environ, "SLURM_CONF": str(folder / "slurm.conf")}
        self.munge_pid: int | None = None

    def run(self, command: list[str], check: bool = True, extra_env: dict | None = None,
            **kwargs) -> subprocess.CompletedProcess:
        env = {**self.env, **(extra_env or {}), "SLURM_CONF": self.env["SLURM_CONF"]}
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, **kwargs)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed ({result.returncode}): {result.stdout}{result.stderr}")
        return result

    def configure(self) -> None:
        host = socket.gethostname().split(".")[0]
        node = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=30).stdout.splitlines()[0]
        for sub in ("state", "spool"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        f = self.folder
        (f / "slurm.conf").write_text("\n".join([
            "ClusterName=gridtest", f"SlurmctldHost={host}", f"SlurmctldPort={free_port()}",
            f"SlurmdPort={free_port()}", "AuthType=auth/munge", "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none", "SlurmUser=root", "SlurmdUser=root", "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core", "ReturnToService=2", "MpiDefault=none", "KillWait=15",
            "SchedulerParameters=sched_interval=2", f"MaxArraySize={MAX_ARRAY_SIZE}",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none", f"StateSaveLocation={f / 'state'}", f"SlurmdSpoolDir={f / 'spool'}",
            f"SlurmctldPidFile={f / 'slurmctld.pid'}", f"SlurmdPidFile={f / 'slurmd.pid'}",
            f"SlurmctldLogFile={f / 'slurmctld.log'}", f"SlurmdLogFile={f / 'slurmd.log'}",
            node, f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP", ""]))

    def start(self) -> None:
        self.munge_pid = start_munge()
        self.configure()
        self.run(["slurmctld"])
        self.run(["slurmd"])
        deadline = time.time() + 30
        while time.time() < deadline:
            state = self.run(["sinfo", "-h", "-o", "%T"], check=False).stdout.strip()
            if state in ("idle", "mixed", "allocated"):
                return
            time.sleep(0.5)
        raise Unavailable(f"the local Slurm node did not become idle in 30 s (sinfo: {state!r}); see "
                          f"{self.folder / 'slurmctld.log'} and {self.folder / 'slurmd.log'}")

    def stop(self) -> None:
        for name in ("slurmd.pid", "slurmctld.pid"):
            pid_file = self.folder / name
            if pid_file.exists():
                try:
                    os.kill(int(pid_file.read_text()), 15)
                except (ProcessLookupError, ValueError):
                    pass
        if self.munge_pid:
            try:
                os.kill(self.munge_pid, 15)
            except ProcessLookupError:
                pass

    def job_states(self, job_id: str) -> dict[str, str]:
        """Array task id -> state, from squeue (pending/running) and the controller's record (recent ends)."""
        shown = self.run(["scontrol", "show", "job", "-o", job_id], check=False).stdout
        states = {}
        for line in shown.splitlines():
            fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
            if "ArrayTaskId" in fields:
                states[fields["ArrayTaskId"]] = fields.get("JobState", "?")
        return states


def start_cluster(folder: Path) -> LocalSlurm:
    """A running local Slurm, or Unavailable with the reason a test can print."""
    if os.geteuid() != 0:
        raise Unavailable("a local Slurm needs root (slurmd runs jobs as their user); run the tests as root")
    missing = [tool for tool in ("slurmctld", "slurmd", "sbatch", "munged", "munge") if shutil.which(tool) is None]
    if missing:
        raise Unavailable(f"{', '.join(missing)} not installed: `apt-get install -y slurm-wlm munge` (as .ci/run does)")
    cluster = LocalSlurm(folder)
    try:
        cluster.start()
    except (OSError, subprocess.SubprocessError, AssertionError, IndexError) as error:
        cluster.stop()
        raise Unavailable(f"could not start a local Slurm: {error}") from error
    except Unavailable:
        cluster.stop()
        raise
    return cluster
