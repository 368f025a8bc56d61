#!/usr/bin/env python3
"""Mutation check: does the test suite notice when one line of the package breaks?

Each mutant replaces one exact piece of code in a temporary copy of the project, then runs the
tests that cover it; the mutant is *killed* when they fail. A mutant that survives is a
behaviour no test protects. Not part of CI (it takes a few minutes); run it after changing a
module or its tests:

    python tools/mutation_check.py            # every mutant
    python tools/mutation_check.py --list     # their names
    python tools/mutation_check.py --only asnorm-std extract-first-crop

Exit status 0 when every mutant is killed, 1 when one survives, 2 when a mutant no longer
applies (its code changed: update the mutant).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutant:
    """One named change: ``find`` (exactly once in ``path``) becomes ``replace``."""

    name: str
    path: str
    find: str
    replace: str
    tests: tuple[str, ...]


MUTANTS = (
    # The five changes that left the suite green before (issue "Tests that bite").
    Mutant("features-uncompressed", "speakernet/features/make_features.py",
           'compression = COMPRESSION_METHOD if options["compress"] else None', "compression = None",
           ("tests/features/test_make_features.py",)),
    Mutant("extract-first-crop", "speakernet/backend/extract.py",
           "embeddings[utt] = output[position : position + len(w)].mean(axis=0)",
           "embeddings[utt] = output[position]", ("tests/backend/test_extract.py",)),
    Mutant("extract-crops-at-zero", "speakernet/backend/extract.py",
           "windows = np.stack([feats[s : s + crop_frames] for s in starts])",
           "windows = np.stack([feats[0:crop_frames] for s in starts])", ("tests/backend/test_extract.py",)),
    Mutant("dataset-no-crop-cmn", "speakernet/data/dataset.py",
           "crop = apply_cmn(crop_or_pad(self.load_features(index), self.crop_frames, rng))  # per-crop CMN, mean only",
           "crop = crop_or_pad(self.load_features(index), self.crop_frames, rng)",
           ("tests/data/test_dataset.py",)),
    Mutant("trainer-rng-not-restored", "speakernet/training/trainer.py",
           'ckpt.set_rng_state(state["rng"])', "None", ("tests/training/test_trainer.py",)),
    # Back-ends.
    Mutant("asnorm-sample-std", "speakernet/backend/normalization.py",
           "std[selected] = top.std(axis=1)", "std[selected] = top.std(axis=1, ddof=1)",
           ("tests/backend/test_normalization.py",)),
    Mutant("asnorm-own-utterance-kept", "speakernet/backend/normalization.py",
           "scores[own, excluded[selected[own]]] = -math.inf", "pass", ("tests/backend/test_normalization.py",)),
    Mutant("snorm-own-member-kept", "speakernet/backend/normalization.py",
           "sums[own_rows] -= own", "sums[own_rows] -= 0", ("tests/backend/test_normalization.py",)),
    Mutant("top-values-tail-dropped", "speakernet/backend/topn.py",
           "counts = np.count_nonzero(above, axis=1)",
           "above[:, blocks * groups:] = False; counts = np.count_nonzero(above, axis=1)",
           ("tests/backend/test_normalization.py",)),
    Mutant("cosine-mean-ignored", "speakernet/backend/scoring.py",
           "centred -= np.asarray(mean, dtype=dtype)", "pass", ("tests/backend/test_scoring.py",)),
    Mutant("eer-not-interpolated", "speakernet/backend/metrics.py",
           "eer = fnr[after] + fraction * (fnr[before] - fnr[after])", "eer = fnr[after]",
           ("tests/backend/test_metrics.py",)),
    Mutant("mindcf-not-normalised", "speakernet/backend/metrics.py",
           "return float(cost[best] / default_cost), float(thresholds[best])",
           "return float(cost[best]), float(thresholds[best])", ("tests/backend/test_metrics.py",)),
    Mutant("lda-weakest-directions", "speakernet/backend/lda.py",
           "order = np.argsort(values)[::-1]", "order = np.argsort(values)", ("tests/backend/test_plda.py",)),
    Mutant("plda-constant-sign", "speakernet/backend/plda.py",
           "constant = 0.5 * (np.log(var_diff) - np.log(var_same)).sum(axis=1)",
           "constant = 0.5 * (np.log(var_same) - np.log(var_diff)).sum(axis=1)", ("tests/backend/test_plda.py",)),
    Mutant("qmf-prior-ignored", "speakernet/backend/calibration.py",
           "offset = math.log(prior / (1 - prior))", "offset = 0.0", ("tests/backend/test_calibration.py",)),
    Mutant("calibration-self-pairs", "speakernet/backend/calibration.py",
           "if utt_a == utt_b or pair in seen:", "if pair in seen:", ("tests/backend/test_calibration.py",)),
    # Samplers.
    Mutant("sampler-ranks-overlap", "speakernet/data/sampler.py",
           "plan = self._global_batches(epoch, total)[global_start + self.rank :: self.world_size]",
           "plan = self._global_batches(epoch, total)[global_start :: self.world_size]",
           ("tests/training/test_sampler_and_schedule.py",)),
    Mutant("sampler-one-crop-seed", "speakernet/data/sampler.py",
           "seeds = rng.integers(0, 2**31 - 1, size=indices.shape)",
           "seeds = np.zeros(indices.shape, dtype=np.int64)", ("tests/training/test_sampler_and_schedule.py",)),
    # Data dirs.
    Mutant("kaldi-dir-duplicates-accepted", "speakernet/data/kaldi_lines.py",
           "if entry.key in table:", "if False:", ("tests/data/test_kaldi_dir.py",)),
    Mutant("validate-unsorted-accepted", "speakernet/data/validate.py",
           "if c_sort_key(entry.key) < c_sort_key(previous.key):", "if False:",
           ("tests/data/test_kaldi_dir.py", "tests/data/test_datadir_ops.py")),
    Mutant("vox1-h-cleaned-list-misnamed", "speakernet/data/prepare/voxceleb.py",
           '"H": ("list_test_hard2.txt", "list_test_hard.txt"),',
           '"H": ("list_test_hard_2.txt", "list_test_hard.txt"),',
           ("tests/data/test_prepare_voxceleb.py",)),
    Mutant("pooled-empty-adapt-written", "speakernet/data/prepare/pooled.py",
           'if not utts and split == "adapt":', "if False:", ("tests/data/test_prepare_pooled.py",)),
    Mutant("kaldi-files-keep-bom", "speakernet/data/kaldi_lines.py",
           "if not text.startswith(_BOM):", "if True:", ("tests/data/test_datadir_ops.py",)),
    Mutant("audio-truncation-unchecked", "speakernet/data/audio.py",
           "if present < size:", "if False:", ("tests/data/test_audio.py",)),
    Mutant("checkpoint-checksum-unchecked", "speakernet/training/checkpoint.py",
           "elif stored != content_checksum(state):", "elif False:", ("tests/training/test_checkpoint.py",)),
    Mutant("training-exp-dir-unlocked", "speakernet/training/trainer.py",
           'first = os.environ.get("RANK", "0") == "0"', "first = False", ("tests/test_locks.py",)),
    Mutant("loader-draws-global-rng", "speakernet/training/trainer.py",
           "generator=torch.Generator().manual_seed(", "generator=None and (", ("tests/training/test_trainer.py",)),
    # The recipes' shell.
    Mutant("recipe-user-path-ignored", "tools/recipe_lib.sh",
           '[[ "${options_given-}" == *" $var "* ]]', "false",
           ("tests/test_recipe_mini.py::test_relative_paths_are_taken_from_the_callers_directory",)),
    # Back-end speed work: exact results, and leftovers of killed runs.
    Mutant("top-values-threshold-off-by-one", "speakernet/backend/topn.py",
           "above = scores >= maxima[:, groups - k, None]", "above = scores >= maxima[:, groups - k + 1, None]",
           ("tests/backend/test_normalization.py",)),
    Mutant("fast-reader-accepts-zero-frames", "speakernet/data/kaldi_lines.py",
           "if not all(map(kind(0).__lt__, numbers))", "if not all(map(kind(-1).__lt__, numbers))",
           ("tests/data/test_kaldi_dir.py",)),
    Mutant("stale-temps-kept", "speakernet/utils/fileio.py",
           "if match is None or _pid_alive(int(match.group(1))):", "if True:", ("tests/test_fileio.py",)),
    Mutant("feature-job-temps-kept", "speakernet/features/make_features.py",
           "    _remove_job_temps(feat_dir)\n", "\n", ("tests/features/test_make_features.py",)),
    # Nothing silent, nothing lost (reliability).
    Mutant("norm-statistics-not-frozen", "speakernet/training/trainer.py",
           'if train_cfg["freeze_norm_stats"] else []', "if False else []", ("tests/training/test_finetune.py",)),
    Mutant("fresh-training-over-an-old-one", "speakernet/training/trainer.py",
           "if first and resume is None:", "if False:", ("tests/training/test_train_metrics.py",)),
    Mutant("resume-entries-unchecked", "speakernet/training/trainer.py",
           "ckpt.require_entries(resume_state, resume_path", "(lambda *a: None)(resume_state, resume_path",
           ("tests/training/test_checkpoint.py",)),
    Mutant("feature-job-old-archives-kept", "speakernet/features/make_features.py",
           '    for name in ("fbank_ark", "fbank_scp", "vad_ark", "vad_scp", "num_frames", "stats"):',
           "    for name in ():", ("tests/test_full_disk.py",)),
    Mutant("embeddings-old-index-kept", "speakernet/backend/embeddings.py",
           "                os.unlink(scp_path)", "                pass", ("tests/backend/test_embeddings.py",)),
    Mutant("feature-jobs-outlive-their-stage", "speakernet/utils/launch.py",
           "env=self.env, preexec_fn=_die_with_parent)", "env=self.env, preexec_fn=None)",
           ("tests/features/test_make_features.py::test_jobs_die_with_a_killed_stage_and_a_rerun_completes",)),
    Mutant("finished-embeddings-not-marked", "speakernet/bin/extract.py",
           "                if pending.is_file():", "                if False:",
           ("tests/backend/test_extract.py::test_extract_stage_embeds_several_dirs_with_one_model_load",)),
    Mutant("subnormals-not-flushed", "speakernet/training/checkpoint.py",
           "    flush_denormals()  # first:", "    pass  # first:", ("tests/backend/test_extract.py",)),
    Mutant("long-utterances-whole", "speakernet/backend/extract.py",
           "    if max_frames <= 0 or len(feats) <= max_frames:", "    if True:",
           ("tests/backend/test_extract.py",)),
    Mutant("config-ranges-unchecked", "speakernet/config.py",
           "    low, high = RANGES.get(path, (None, None))", "    low, high = None, None",
           ("tests/test_config.py",)),
    Mutant("component-arg-types-unchecked", "speakernet/config.py",
           '                _check_arg_type(value, accepted[arg], f"{args_key}.{arg}")', "                pass",
           ("tests/test_config.py",)),
)


def _project_files() -> list[str]:
    """Tracked files plus new, not ignored ones (tests written but not committed yet)."""
    listing = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                             check=True, capture_output=True).stdout
    return [name for name in listing.decode().split("\0") if name and (ROOT / name).is_file()]


def _copy_project(destination: Path) -> None:
    for name in _project_files():
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)


def _run_tests(copy: Path, tests: tuple[str, ...]) -> tuple[bool, float, str]:
    """Runs ``tests`` against the copy's package; returns (passed, seconds, last output line)."""
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                            cwd=copy, env=env, capture_output=True, text=True)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    return result.returncode == 0, time.perf_counter() - start, lines[-1] if lines else result.stderr.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="print the mutants and exit")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutants")
    args = parser.parse_args(argv)
    names = [mutant.name for mutant in MUTANTS]
    if args.list:
        for mutant in MUTANTS:
            print(f"{mutant.name:32s} {mutant.path}")
        return 0
    unknown = sorted(set(args.only or ()) - set(names))
    if unknown:
        parser.error(f"unknown mutant(s): {', '.join(unknown)} (see --list)")
    selected = [mutant for mutant in MUTANTS if not args.only or mutant.name in args.only]
    status = 0
    with tempfile.TemporaryDirectory(prefix="speakernet-mutants-") as tmp:
        copy = Path(tmp)
        _copy_project(copy)
        # The unmutated copy must pass, or a kill means nothing; and the copy's package must be the one tested.
        probe = subprocess.run([sys.executable, "-c", "import speakernet; print(speakernet.__file__)"], cwd=copy,
                               env={**os.environ, "PYTHONPATH": str(copy)}, capture_output=True, text=True)
        if not probe.stdout.strip().startswith(str(copy)):
            print(f"mutation_check: the tests would import speakernet from {probe.stdout.strip() or probe.stderr}, "
                  f"not from the copy {copy}", file=sys.stderr)
            return 2
        baseline = sorted({test for mutant in selected for test in mutant.tests})
        passed, seconds, summary = _run_tests(copy, tuple(baseline))
        if not passed:
            print(f"mutation_check: the unmutated tests fail ({summary}); fix them first", file=sys.stderr)
            return 2
        print(f"unmutated: {len(baseline)} test files pass in {seconds:.0f} s\n")
        print(f"{'mutant':32s} {'result':9s} {'time':>6s}  tests")
        for mutant in selected:
            path = copy / mutant.path
            original = path.read_text(encoding="utf-8")
            if original.count(mutant.find) != 1:
                print(f"{mutant.name:32s} {'STALE':9s} {'':>6s}  '{mutant.find}' occurs "
                      f"{original.count(mutant.find)} times in {mutant.path}")
                status = max(status, 2)
                continue
            path.write_text(original.replace(mutant.find, mutant.replace), encoding="utf-8")
            try:
                passed, seconds, summary = _run_tests(copy, mutant.tests)
            finally:
                path.write_text(original, encoding="utf-8")
            result = "SURVIVED" if passed else "killed"
            if passed:
                status = max(status, 1)
            print(f"{mutant.name:32s} {result:9s} {seconds:5.0f}s  {' '.join(mutant.tests)}  ({summary})", flush=True)
    killed = "every mutant killed" if status == 0 else "NOT every mutant killed"
    print(f"\n{len(selected)} mutants: {killed}")
    return status


if __name__ == "__main__":
    sys.exit(main())
