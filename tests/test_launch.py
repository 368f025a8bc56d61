"""The job launchers (run.pl, slurm.pl against a fake sbatch), their CLI and the tools/ wrappers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_slurm import install_fake_slurm, sbatch_calls

from speakernet.bin.launch import main as launch_main
from speakernet.utils.launch import (JobRange, LocalLauncher, SlurmLauncher, failure_message, launcher_from_command,
                                     parse_job_range, unused_placeholder)

TOOLS = Path(__file__).resolve().parents[1] / "tools"
# A job that writes its number to out.JOB and fails when it is 2.
FAIL_ON_2 = [sys.executable, "-c",
             "import sys; open(sys.argv[1], 'w').write(sys.argv[2]); sys.exit(sys.argv[2] == '2')"]


def test_job_ranges_and_placeholders() -> None:
    assert parse_job_range("JOB=1:4") == JobRange("JOB", 1, 4)
    assert parse_job_range("N=3:3").jobs == [3]
    assert parse_job_range("log/x.JOB.log") is None
    with pytest.raises(ValueError, match="FIRST <= LAST"):
        parse_job_range("JOB=4:1")
    assert JobRange("JOB", 1, 2).substitute("a.JOB.b.JOB", 2) == "a.2.b.2"
    assert unused_placeholder(["/data/JOBS/x", "JOB_"]) == "JOB__"
    assert unused_placeholder(["/data/x"]) == "JOB"


def test_command_strings_choose_and_configure_the_launcher() -> None:
    assert launcher_from_command(None) == LocalLauncher()
    assert launcher_from_command("run.pl --max-jobs-run 2") == LocalLauncher(max_jobs_run=2)
    assert launcher_from_command("tools/run.pl --mem 4G --gpu 1") == LocalLauncher()  # Slurm options ignored
    slurm = launcher_from_command("slurm.pl --partition cpu --time 2:00:00 --mem 4G --gpu 1 --num-threads 4 "
                                  "--max-jobs-run 10 --extra-args '--account proj --qos low'")
    assert slurm == SlurmLauncher(partition="cpu", time="2:00:00", mem="4G", gpus=1, cpus_per_task=4,
                                  max_jobs_run=10, extra_args=["--account", "proj", "--qos", "low"])
    with pytest.raises(ValueError, match="unknown job launcher 'queue.pl'; choose one of run.pl, slurm.pl"):
        launcher_from_command("queue.pl -q all.q")
    with pytest.raises(ValueError, match="unrecognized arguments: --partiton.*--partition"):
        launcher_from_command("slurm.pl --partiton cpu")
    with pytest.raises(ValueError, match="--max-jobs-run must be >= 1"):
        launcher_from_command("run.pl --max-jobs-run 0")


def test_local_launcher_logs_each_job_and_reports_the_failed_one(tmp_path: Path) -> None:
    statuses = LocalLauncher().run(FAIL_ON_2 + [str(tmp_path / "out.JOB"), "JOB"], tmp_path / "log" / "x.JOB.log",
                                   JobRange("JOB", 1, 3))
    assert [(s.job, s.code, s.log.name) for s in statuses] == [(1, 0, "x.1.log"), (2, 1, "x.2.log"), (3, 0, "x.3.log")]
    assert [(tmp_path / f"out.{job}").read_text() for job in (1, 2, 3)] == ["1", "2", "3"]
    log = (tmp_path / "log" / "x.2.log").read_text()
    assert log.startswith("# ") and " 2\n" in log and "# ended (exit code 1)" in log
    assert failure_message(statuses) == f"1 of 3 jobs failed: job 2 (exit code 1, see {tmp_path}/log/x.2.log)"
    assert failure_message(statuses[:1]) == ""


def test_local_launcher_runs_at_most_max_jobs_at_once(tmp_path: Path) -> None:
    # Each job appends "start J" and, a moment later, "end J": one at a time, they never interleave.
    script = ("import sys, time; f = open(sys.argv[1], 'a'); f.write('start\\n'); f.flush(); time.sleep(0.2); "
              "f.write('end\\n')")
    LocalLauncher(max_jobs_run=1).run([sys.executable, "-c", script, str(tmp_path / "trace")],
                                      tmp_path / "JOB.log", JobRange("JOB", 1, 3))
    assert (tmp_path / "trace").read_text().split() == ["start", "end"] * 3


def test_slurm_launcher_submits_one_array_and_collects_the_statuses(tmp_path: Path, monkeypatch) -> None:
    record = install_fake_slurm(tmp_path / "bin", monkeypatch)
    launcher = SlurmLauncher(partition="cpu", time="0:10:00", mem="1G", max_jobs_run=2, extra_args=["--nice", "5"])
    run = launcher.start(FAIL_ON_2 + [str(tmp_path / "out.JOB"), "JOB"], tmp_path / "log" / "x.JOB.log",
                         JobRange("JOB", 1, 3))
    statuses = run.wait()
    assert run._job_id() == "4242"  # what scancel would stop: sbatch's answer, not a number of its arguments
    assert [(s.job, s.code) for s in statuses] == [(1, 0), (2, 1), (3, 0)]
    assert [(tmp_path / f"out.{job}").read_text() for job in (1, 2, 3)] == ["1", "2", "3"]
    (call,) = sbatch_calls(record)
    assert call[:3] == ["--array=1-3%2", "--wait", "--parsable"]
    assert {"--partition=cpu", "--time=0:10:00", "--mem=1G", "--cpus-per-task=1", "--job-name=x"} <= set(call)
    assert call[-3:] == ["--nice", "5", str(tmp_path / "log" / "q" / "x.sh")]
    assert "# ended (exit code 1)" in (tmp_path / "log" / "x.2.log").read_text()
    assert (tmp_path / "log" / "q" / "x.2.status").read_text().strip() == "1"

    # A task Slurm lost (no status file) has failed too, even though the others succeeded.
    monkeypatch.setenv("FAKE_SBATCH_LOSE_TASK", "3")
    run = SlurmLauncher(status_grace_s=0.1).start(FAIL_ON_2 + [str(tmp_path / "o.JOB"), "1"],
                                                  tmp_path / "log" / "x.JOB.log", JobRange("JOB", 1, 3))
    statuses = run.wait()
    assert [(s.job, s.code) for s in statuses] == [(1, 0), (2, 0), (3, None)]  # the old x.3.status was removed
    assert "sbatch exited with status 137" in run.problem
    assert "job 3 (no exit status (it did not run or was killed; see" in failure_message(statuses, run.problem)


def test_slurm_launcher_reports_an_sbatch_that_refuses(tmp_path: Path, monkeypatch) -> None:
    install_fake_slurm(tmp_path / "bin", monkeypatch)
    monkeypatch.setenv("FAKE_SBATCH_REFUSE", "nosuch")
    run = SlurmLauncher(partition="nosuch").start(["true"], tmp_path / "x.JOB.log", JobRange("JOB", 1, 2))
    assert [s.code for s in run.wait()] == [None, None]
    assert "sbatch exited with status 1" in run.problem and "invalid partition specified: nosuch" in run.problem
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    run = SlurmLauncher().start(["true"], tmp_path / "x.JOB.log", JobRange("JOB", 1, 1))
    assert [s.code for s in run.wait()] == [None] and "is Slurm installed here?" in run.problem


def test_launch_cli(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    assert launch_main(["run.pl", "JOB=1:2", str(tmp_path / "x.JOB.log"), "true"]) == 0
    assert launch_main(["run.pl", str(tmp_path / "one.log"), "false"]) == 1  # no range: one job
    stderr = capfd.readouterr().err
    assert "job 1 (exit code 1" in stderr and "one.log" in stderr
    assert launch_main(["run.pl", "JOB=1:2"]) == 2
    assert launch_main(["srun.pl", "x.log", "true"]) == 2
    assert "expected a launcher (run.pl, slurm.pl) first, got 'srun.pl'" in capfd.readouterr().err
    assert launch_main(["--help"]) == 0 and "JOB=1:4" in capfd.readouterr().out


def _tool(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(TOOLS / args[0]), *args[1:]], cwd=tmp_path, capture_output=True, text=True,
                          env=dict(os.environ), timeout=120)


def test_run_pl_and_slurm_pl_command_lines(tmp_path: Path, monkeypatch) -> None:
    result = _tool(tmp_path, "run.pl", "--max-jobs-run", "2", "JOB=1:3", "log/run.JOB.log", *FAIL_ON_2, "out.JOB",
                   "JOB")
    assert result.returncode == 1
    assert "1 of 3 jobs failed: job 2 (exit code 1, see log/run.2.log)" in result.stderr
    assert sorted(p.name for p in (tmp_path / "log").iterdir()) == ["run.1.log", "run.2.log", "run.3.log"]
    assert _tool(tmp_path, "run.pl", "JOB=1:3", "log/ok.JOB.log", "true").returncode == 0

    record = install_fake_slurm(tmp_path / "bin", monkeypatch)
    result = _tool(tmp_path, "slurm.pl", "--partition", "gpu", "--time", "1:00:00", "--mem", "8G", "--gpu", "1",
                   "--num-threads", "4", "--extra-args", "--account proj", "JOB=2:3", "log/s.JOB.log", *FAIL_ON_2,
                   "sout.JOB", "JOB")
    assert result.returncode == 1 and "1 of 2 jobs failed: job 2 (exit code 1, see " in result.stderr
    assert "log/s.2.log" in result.stderr
    (call,) = sbatch_calls(record)
    assert {"--array=2-3", "--partition=gpu", "--time=1:00:00", "--mem=8G", "--gres=gpu:1",
            "--cpus-per-task=4", "--account", "proj"} <= set(call)
    assert (tmp_path / "sout.3").read_text() == "3" and (tmp_path / "log" / "s.3.log").is_file()
    result = _tool(tmp_path, "slurm.pl", "--partiton", "x", "log/s.log", "true")
    assert result.returncode == 2 and "--partiton" in result.stderr
