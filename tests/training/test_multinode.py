"""Training on several machines, here 2 "nodes" x 1 process on this one through a real c10d rendezvous: stage 2
of sv_stages.sh run on each node (--nnodes, --rdzv-endpoint), and tools/slurm_train.sh against a fake Slurm."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from fake_slurm import install_fake_slurm, sbatch_calls

from speakernet.config import load_config, save_config
from speakernet.training import checkpoint as ckpt

from training_data import TINY_OVERRIDES, free_ports

TOOLS = Path(__file__).resolve().parents[2] / "tools"


def _tiny_conf(tmp_path: Path) -> Path:
    conf = tmp_path / "tiny.yaml"
    # 30 utterances, batches of 3 on 2 processes: 5 steps an epoch
    save_config(load_config(None, TINY_OVERRIDES + ["training.epochs=1", "data.batch_size=3"]), conf)
    return conf


def _check_trained_on_two(exp: Path) -> str:
    """Checks the training's last checkpoint and the nodes' logs; returns the logs."""
    state = ckpt.load_checkpoint(ckpt.resolve_checkpoint(exp, "latest"))
    assert (state["world_size"], state["epoch"], state["batch_in_epoch"], state["step"]) == (2, 0, 5, 5)
    text = "".join(log.read_text() for log in exp.glob("log/train.*.log"))
    assert "DDP replicas in sync" in text and "joined process group: rank 1 of 2" in text
    assert (exp / ".train.done").is_file()
    return text


def test_stage_2_run_on_each_node_joins_one_rendezvous(feature_dir: Path, tmp_path: Path) -> None:
    conf, exp, port = _tiny_conf(tmp_path), tmp_path / "exp", free_ports(1)[0]
    command = ["bash", str(TOOLS / "sv_stages.sh"), "--stage", "2", "--stop-stage", "2", "--conf", str(conf),
               "--train-data", str(feature_dir), "--exp-dir", str(exp), "--nnodes", "2",
               "--rdzv-endpoint", f"127.0.0.1:{port}"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    nodes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
             for _ in range(2)]
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    assert len(list(exp.glob("log/train.*.log"))) == 2  # one log per node
    text = _check_trained_on_two(exp)
    assert f"--rdzv-endpoint=127.0.0.1:{port} --rdzv-id=speakernet-exp" in text


def test_a_recipe_trains_on_two_slurm_nodes(feature_dir: Path, tmp_path: Path, monkeypatch) -> None:
    record = install_fake_slurm(tmp_path / "bin", monkeypatch)
    monkeypatch.setenv("FAKE_SLURM_NODELIST", "127.0.0.1,localhost")  # the first node hosts the rendezvous
    conf, port = _tiny_conf(tmp_path), free_ports(1)[0]
    train_cmd = f"slurm_train.sh --nodes 2 --nproc-per-node 1 --partition cpu --time 0:10:00 --mem 2G --port {port}"
    exp = tmp_path / "exp"
    done = subprocess.run(
        ["bash", str(TOOLS / "sv_stages.sh"), "--stage", "2", "--stop-stage", "2", "--conf", str(conf),
         "--train-data", str(feature_dir), "--exp-dir", str(exp), "--train-cmd", train_cmd],
        capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "training job 4243 done" in done.stderr

    [sbatch] = sbatch_calls(record)
    for option in ("--nodes=2", "--ntasks-per-node=1", "--partition=cpu", "--time=0:10:00", "--mem=2G", "--wait"):
        assert option in sbatch
    [srun] = sbatch_calls(record.with_name("srun.calls"))
    assert srun[:3] == ["--nodes=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    for option in ("--nnodes=2", "--nproc-per-node=1", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
                   "--rdzv-id=4243"):
        assert option in srun
    assert " -m torch.distributed.run " in " ".join(srun) and " -m speakernet.bin.train " in " ".join(srun)

    _check_trained_on_two(exp)


def test_a_failed_training_job_fails_the_launcher_with_its_log(tmp_path: Path, monkeypatch) -> None:
    record = install_fake_slurm(tmp_path / "bin", monkeypatch)
    log = tmp_path / "log" / "train.log"
    done = subprocess.run(
        ["bash", str(TOOLS / "slurm_train.sh"), "--nodes", "1", "--gpus-per-node", "1", "--port", str(free_ports(1)[0]),
         "--extra-args", "--account proj", str(log), "-m", "speakernet.bin.train", "--conf", "missing.yaml"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "training job 4243 failed (exit status 1)" in done.stderr
    assert "arguments are required: --data-dir" in log.read_text()
    assert "speakernet.bin.train: error: the following arguments are required: --data-dir" in done.stderr
    [sbatch] = sbatch_calls(record)
    assert "--gpus-per-node=1" in sbatch and sbatch[-3:-1] == ["--account", "proj"]
    [srun] = sbatch_calls(record.with_name("srun.calls"))
    assert "--nproc-per-node=1" in srun  # one process per GPU
    assert (log.parent / "q" / "train.sh").is_file()


def test_launcher_options_are_checked_before_submitting(tmp_path: Path, monkeypatch) -> None:
    record = install_fake_slurm(tmp_path / "bin", monkeypatch)
    for args, message in ((["--nodes", "0"], "--nodes must be a positive whole number"),
                          (["--gpu", "1"], "unknown option '--gpu'"),
                          (["--nodes", "2", "log", "speakernet.bin.train"], "usage: slurm_train.sh")):
        done = subprocess.run(["bash", str(TOOLS / "slurm_train.sh"), *args, *(["log", "-m", "x"] if len(args) < 3
                                                                                 else [])],
                              capture_output=True, text=True)
        assert done.returncode == 1 and message in done.stderr, (args, done.stderr)
    assert not sbatch_calls(record)
