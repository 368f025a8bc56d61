"""The cost of CN-Celeb's merged short utterances: header reads for the merge, and reading a merged one.

It writes a small synthetic CN-Celeb1 tree (16-bit flac, 1-3 s utterances, five per speaker and genre)
in a temporary dir, then times:

- ``prepare``: ``prepare_cnceleb`` without and with ``min_train_duration=5`` (the second reads every
  training file's header to choose the merges): files/s of each;
- ``read``: loading every merged utterance through its ``wav.scp`` ffmpeg pipe against loading the same
  parts with soundfile and joining them (``load_audio`` on each part), as a ratio.

The cases run interleaved for ``--rounds`` rounds, so a load change on the shared machine hits them
alike; compare ratios, not the absolute figures of two runs. Not run by CI::

    PYTHONPATH=. OMP_NUM_THREADS=1 python benches/bench_combine_short.py --speakers 20 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

from speakernet.data.audio import load_audio
from speakernet.data.kaldi_dir import read_scp
from speakernet.data.prepare.cnceleb import prepare_cnceleb

RATE = 16000
GENRES = ("interview", "speech", "vlog")


def make_tree(root: Path, speakers: int, seed: int = 0) -> int:
    """Writes CN-Celeb1's layout (training speakers, one eval speaker) and returns the training file count."""
    rng = np.random.default_rng(seed)
    count = 0
    for s in range(speakers + 1):
        spk = f"id{s + 1:05d}" if s < speakers else "id00800"
        for genre in GENRES:
            for n in range(5):
                samples = (rng.standard_normal(int(rng.uniform(1.0, 3.0) * RATE)) * 2000).astype(np.int16)
                path = root / "data" / spk / f"{genre}-01-{n + 1:03d}.flac"
                path.parent.mkdir(parents=True, exist_ok=True)
                soundfile.write(path, samples, RATE)
                count += s < speakers
    for where in ("enroll/id00800-enroll.flac", "test/id00800-drama-01-001.flac"):
        (root / "eval" / where).parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(root / "eval" / where, np.zeros(RATE, dtype=np.int16), RATE)
    lists = root / "eval" / "lists"
    lists.mkdir(parents=True)
    (lists / "enroll.lst").write_text("id00800-enroll enroll/id00800-enroll.wav\n")
    (lists / "enroll.map").write_text("id00800-enroll id00800/vlog-01-001.wav\n")
    (lists / "trials.lst").write_text("id00800-enroll test/id00800-drama-01-001.wav 1\n")
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--speakers", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "CN-Celeb_flac"
        files = make_tree(root, args.speakers)
        times: dict[str, list[float]] = {"prepare plain": [], "prepare merged": [], "read pipes": [],
                                         "read parts": []}
        for _ in range(args.rounds):
            for name, seconds in (("prepare plain", 0.0), ("prepare merged", 5.0)):
                started = time.perf_counter()
                prepare_cnceleb(root, Path(tmp) / name.replace(" ", "_"), enroll_mode="concat",
                                min_train_duration=seconds)
                times[name].append(time.perf_counter() - started)
            merged = {utt: value for utt, value in read_scp(Path(tmp) / "prepare_merged" / "cnceleb_train" /
                                                            "wav.scp").items() if value.endswith("|")}
            started = time.perf_counter()
            pipe_samples = sum(load_audio(value)[0].size for value in merged.values())
            times["read pipes"].append(time.perf_counter() - started)
            started = time.perf_counter()
            part_samples = 0
            for value in merged.values():
                parts = [word for word in value.split() if word.endswith(".flac")]
                part_samples += np.concatenate([load_audio(part)[0] for part in parts]).size
            times["read parts"].append(time.perf_counter() - started)
            assert pipe_samples == part_samples
        median = {name: statistics.median(values) for name, values in times.items()}
        print(f"{files} training files, {len(merged)} merged utterances "
              f"({pipe_samples / RATE / 3600:.2f} h of audio in them), median of {args.rounds} rounds:")
        print(f"  prepare, no merging: {files / median['prepare plain']:.0f} files/s; with merging (headers read): "
              f"{files / median['prepare merged']:.0f} files/s")
        print(f"  reading the merged utterances: pipes {len(merged) / median['read pipes']:.1f} utts/s, "
              f"parts joined in Python {len(merged) / median['read parts']:.1f} utts/s "
              f"(pipes take {median['read pipes'] / median['read parts']:.2f}x the time)")


if __name__ == "__main__":
    main()
