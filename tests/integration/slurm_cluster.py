"""A throwaway one-node SLURM cluster (Debian 12's Slurm 22.05), for running the workflow through
snakemake-executor-plugin-slurm in a test.

Everything it makes lives in one temporary folder: a munge key and socket, a MariaDB server for
slurmdbd (the plugin polls job states with ``sacct``, which needs accounting), the configuration
files, the daemons' state, spool and logs. No systemd and no cgroups: processes are tracked by
``/proc`` and not confined, memory is not enforced. The node declares ``cpus`` CPUs and ``gpus``
fake GPUs: gres.conf names character devices that exist on every Linux machine (/dev/null,
/dev/zero) as the GPU files, so ``--gpus=1`` schedules and the job gets ``CUDA_VISIBLE_DEVICES``;
nothing opens them. The daemons run as root, as on a real cluster. Measured facts behind each
setting: ../shared/notes/slurm-one-node.md.

``one_node_cluster()`` yields a ``Cluster`` whose ``env`` points the SLURM commands at it, and stops
every daemon it started (by process id) when the block ends, after cancelling any job left.
"""
from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

# Debian 12 packages that provide every program the cluster runs (`.ci/run` installs them).
PACKAGES = ("slurmctld", "slurmd", "slurm-client", "slurmdbd", "munge", "mariadb-server-core")
PROGRAMS = ("munged", "mariadb-install-db", "mariadbd", "slurmdbd", "slurmctld", "slurmd", "sbatch", "srun",
            "sacct", "sinfo", "squeue", "scancel")
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
FAKE_GPU_DEVICES = ("/dev/null", "/dev/zero")
START_TIMEOUT_S = 60


class ClusterError(RuntimeError):
    """A daemon did not start; the message carries the end of its log."""


def unavailable_reason() -> str | None:
    """Why a one-node cluster cannot start on this machine, or None when it can."""
    missing = [p for p in PROGRAMS if program(p) is None]
    if missing:
        return (f"SLURM is not installed ({', '.join(missing)} not found); install it with: "
                f"apt-get install --no-install-recommends {' '.join(PACKAGES)} (.ci/run does)")
    if os.geteuid() != 0:
        return "the one-node SLURM cluster runs its daemons as root; run the test as root"
    return None


@dataclass
class Cluster:
    root: Path
    conf: Path
    partition: str
    cpus: int
    logs: dict[str, Path]

    def environment(self, base: dict[str, str]) -> dict[str, str]:
        """``base`` with the SLURM commands pointed at this cluster (for Snakemake and, through
        ``sbatch --export=ALL``, its jobs); the rest of ``base``, its PATH included, is kept."""
        path = os.pathsep.join([str(self.root / "bin"), base.get("PATH", ""), "/usr/sbin", "/sbin"])
        return {**base, "SLURM_CONF": str(self.conf), "PATH": path}

    @property
    def env(self) -> dict[str, str]:
        return self.environment(dict(os.environ))

    def jobs(self) -> list[dict[str, str]]:
        """Every job this cluster ran or runs, from accounting (sacct): one dict per job allocation."""
        fields = ("JobID", "JobName", "State", "ExitCode", "Start", "End", "ReqTRES", "AllocTRES", "Comment")
        out = self.run("sacct", "--allusers", "--allocations", "--noheader", "--parsable2",
                       "--starttime", "2000-01-01", "--format", ",".join(fields))
        return [dict(zip(fields, line.split("|"))) for line in out.splitlines() if line]

    def run(self, *cmd: str) -> str:
        result = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise ClusterError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def log_tails(self, chars: int = 3000) -> str:
        """The end of every daemon's log, for a failure message."""
        return "\n".join(f"--- {name}\n{path.read_text(errors='replace')[-chars:] if path.exists() else '(none)'}"
                         for name, path in self.logs.items())


def program(name: str) -> str:
    """The absolute path of one of PROGRAMS (the daemons live in /usr/sbin, which a user's PATH may lack)."""
    return shutil.which(name, path=SEARCH_PATH)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(ready, what: str, log: Path, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready():
        if (process is not None and process.poll() is not None) or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
            state = "exited" if process is not None and process.poll() is not None else "timed out"
            raise ClusterError(f"{what} did not start ({state}); end of {log}:\n{tail}")
        time.sleep(0.2)


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _slurm_conf(d: dict) -> str:
    return f"""\
ClusterName=metalr
SlurmctldHost={d['host']}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={d['munge_socket']}
CredType=cred/munge
SlurmctldPort={d['ctld_port']}
SlurmdPort={d['slurmd_port']}
StateSaveLocation={d['root']}/state
SlurmdSpoolDir={d['root']}/spool
SlurmctldPidFile={d['root']}/run/slurmctld.pid
SlurmdPidFile={d['root']}/run/slurmd.pid
SlurmctldLogFile={d['root']}/log/slurmctld.log
SlurmdLogFile={d['root']}/log/slurmd.log
# no systemd, no cgroups
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={d['dbd_port']}
AccountingStoragePass={d['munge_socket']}
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# without a default, each job would take the node's whole memory and jobs would run one at a time
DefMemPerCPU=1000
# refuse at submission what the node can never run (the default leaves such a job pending forever)
EnforcePartLimits=ALL
MailProg=/bin/true
ReturnToService=2
# the node may declare other CPUs and memory than the machine has (nothing enforces them here)
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName={d['host']} NodeAddr=127.0.0.1 CPUs={d['cpus']} RealMemory={d['memory_mb']} Gres=gpu:{d['gpus']} State=UNKNOWN
PartitionName={d['partition']} Nodes={d['host']} Default=YES MaxTime=INFINITE State=UP
"""


def _slurmdbd_conf(d: dict) -> str:
    return f"""\
AuthType=auth/munge
AuthInfo=socket={d['munge_socket']}
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={d['dbd_port']}
SlurmUser=root
PidFile={d['root']}/run/slurmdbd.pid
LogFile={d['root']}/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={d['db_port']}
StorageUser=root
StorageLoc=slurm_acct_db
"""


@contextlib.contextmanager
def one_node_cluster(partition: str, cpus: int = 2, gpus: int = 2, memory_mb: int = 64000) -> Iterator[Cluster]:
    """Start munged, MariaDB, slurmdbd, slurmctld and slurmd for one node; stop them all on exit.

    ``partition``: the partition's name (a job submitted to another is refused). ``cpus``, ``gpus``
    (at most 2), ``memory_mb``: what the node declares. Raises ClusterError when a daemon fails to
    start (after stopping the ones already running). Call ``unavailable_reason()`` first.
    """
    if gpus > len(FAKE_GPU_DEVICES):
        raise ValueError(f"at most {len(FAKE_GPU_DEVICES)} fake GPUs")
    root = Path(tempfile.mkdtemp(prefix="metalr-slurm-"))  # short: unix socket paths hold 107 bytes
    for sub in ("etc", "state", "spool", "log", "run", "bin", "db", "munge-key"):
        (root / sub).mkdir()
    (root / "munge-key").chmod(0o700)
    settings = dict(root=root, host=socket.gethostname().split(".")[0], partition=partition, cpus=cpus, gpus=gpus,
                    memory_mb=memory_mb, munge_socket=root / "run" / "munge.socket", ctld_port=_free_port(),
                    slurmd_port=_free_port(), dbd_port=_free_port(), db_port=_free_port())
    conf = root / "etc" / "slurm.conf"
    conf.write_text(_slurm_conf(settings))
    (root / "etc" / "gres.conf").write_text("".join(f"Name=gpu File={dev}\n" for dev in FAKE_GPU_DEVICES[:gpus]))
    dbd_conf = root / "etc" / "slurmdbd.conf"  # slurmdbd reads it beside SLURM_CONF; it must be private
    dbd_conf.write_text(_slurmdbd_conf(settings))
    dbd_conf.chmod(0o600)
    # The jobstep plugin starts each job's srun with every SLURM_* variable removed, SLURM_CONF too; a
    # real cluster's srun finds /etc/slurm/slurm.conf, this one's configuration is here.
    shim = root / "bin" / "srun"
    shim.write_text(f"#!/bin/sh\nSLURM_CONF={shlex.quote(str(conf))} exec "
                    f"{shlex.quote(program('srun'))} \"$@\"\n")
    shim.chmod(0o755)
    # munged in the foreground logs to its stderr (munged.out); the others to their own log files
    logs = {"munged": root / "log" / "munged.out",
            **{name: root / "log" / f"{name}.log" for name in ("mariadb", "slurmdbd", "slurmctld", "slurmd")}}
    cluster = Cluster(root, conf, partition, cpus, logs)
    env = cluster.env
    started: dict[str, subprocess.Popen] = {}

    def start(name: str, cmd: list[str]) -> subprocess.Popen:
        with open(root / "log" / f"{name}.out", "w") as out:
            started[name] = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                             stderr=subprocess.STDOUT)
        return started[name]

    try:
        key = root / "munge-key" / "munge.key"
        key.write_bytes(os.urandom(128))
        key.chmod(0o400)
        munged = start("munged", [program("munged"), "--foreground", "--force", f"--key-file={key}",
                                  f"--socket={settings['munge_socket']}", f"--pid-file={root}/run/munged.pid",
                                  f"--seed-file={root}/run/munged.seed"])
        _wait(settings["munge_socket"].exists, "munged", logs["munged"], munged)

        datadir = root / "db" / "data"
        install = subprocess.run([program("mariadb-install-db"), "--no-defaults", f"--datadir={datadir}",
                                  "--user=root", "--auth-root-authentication-method=normal", "--skip-test-db"],
                                 env=env, capture_output=True, text=True, timeout=120)
        if install.returncode != 0:
            raise ClusterError(f"mariadb-install-db failed ({install.returncode}):\n{install.stdout}{install.stderr}")
        mariadb = start("mariadb", [program("mariadbd"), "--no-defaults", f"--datadir={datadir}", "--user=root",
                                    f"--socket={root}/run/mysqld.sock", f"--port={settings['db_port']}",
                                    "--bind-address=127.0.0.1", f"--pid-file={root}/run/mysqld.pid",
                                    f"--log-error={logs['mariadb']}", "--skip-log-bin"])
        _wait(lambda: _accepts(settings["db_port"]), "MariaDB", logs["mariadb"], mariadb)

        slurmdbd = start("slurmdbd", [program("slurmdbd"), "-D"])
        _wait(lambda: _accepts(settings["dbd_port"]), "slurmdbd", logs["slurmdbd"], slurmdbd)
        slurmctld = start("slurmctld", [program("slurmctld"), "-D", "-f", str(conf)])
        slurmd = start("slurmd", [program("slurmd"), "-D", "-f", str(conf), "-N", settings["host"]])

        def node_idle() -> bool:
            sinfo = subprocess.run([program("sinfo"), "--noheader", "--format=%T"], env=env, capture_output=True,
                                   text=True)
            return sinfo.stdout.strip() == "idle"

        _wait(node_idle, "the node (slurmctld + slurmd)", logs["slurmd"], slurmd)
        _wait(lambda: slurmctld.poll() is None and subprocess.run(
            [program("sacct"), "--noheader"], env=env, capture_output=True).returncode == 0,
            "accounting (sacct)", logs["slurmctld"], slurmctld)
        yield cluster
    finally:
        _stop(cluster, started)


def _stop(cluster: Cluster, started: dict[str, subprocess.Popen]) -> None:
    """Cancel every job left, then stop the daemons this cluster started, newest first, by process id."""
    if "slurmd" in started:
        subprocess.run([program("scancel"), "--user=root"], env=cluster.env,
                       capture_output=True, timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and subprocess.run(
                [program("squeue"), "--noheader"], env=cluster.env, capture_output=True,
                text=True, timeout=30).stdout.strip():
            time.sleep(0.5)
    for process in reversed(started.values()):
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)
    shutil.rmtree(cluster.root, ignore_errors=True)
