"""Speed of the front-end: fbank+VAD on one long waveform, and the whole make_features stage.

Usage:
    python benches/bench_features.py [--seconds 60] [--num-utts 100] [--utt-seconds 8] [--nj 1 2]

Prints x real time (audio seconds per wall second) and utterances per second. Audio is
synthetic (tones in bursts plus noise) and written to a temporary directory.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

from speakernet.features.fbank import compute_fbank_and_energy
from speakernet.features.make_features import make_features
from speakernet.features.vad import compute_vad


def synthetic_audio(seconds: float, rate: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    voiced = np.sin(2 * np.pi * 1.5 * t) > -0.3
    speech = 0.2 * np.sin(2 * np.pi * (120 + 10 * (seed % 7)) * t) * voiced
    return (speech + 0.005 * rng.standard_normal(t.size)).astype(np.float32)


def bench_frontend(seconds: float, repeats: int = 5) -> None:
    waveform = synthetic_audio(seconds, 16000, 0)
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        _, log_energy = compute_fbank_and_energy(waveform)
        compute_vad(log_energy)
        timings.append(time.perf_counter() - start)
    best = min(timings)
    print(f"fbank+vad on {seconds:.0f} s of 16 kHz audio: best of {repeats} {best * 1000:.1f} ms "
          f"= {seconds / best:.0f}x real time (one thread)")


def bench_stage(num_utts: int, utt_seconds: float, jobs: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "data"
        data.mkdir()
        wav_lines, utt_lines = [], []
        for index in range(num_utts):
            utt = f"spk{index % 10:02d}-utt{index:04d}"
            path = root / "wav" / f"{utt}.wav"
            path.parent.mkdir(exist_ok=True)
            soundfile.write(path, synthetic_audio(utt_seconds, 16000, index), 16000, subtype="PCM_16")
            wav_lines.append(f"{utt} {path}\n")
            utt_lines.append((utt, f"spk{index % 10:02d}"))
        wav_lines.sort()
        utt_lines.sort()
        (data / "wav.scp").write_text("".join(wav_lines))
        (data / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in utt_lines))
        spk2utt: dict[str, list[str]] = {}
        for utt, spk in utt_lines:
            spk2utt.setdefault(spk, []).append(utt)
        (data / "spk2utt").write_text("".join(f"{s} {' '.join(us)}\n" for s, us in sorted(spk2utt.items())))
        total = num_utts * utt_seconds
        for nj in jobs:
            start = time.perf_counter()
            make_features(data, root / f"fbank_nj{nj}", nj=nj)
            wall = time.perf_counter() - start
            print(f"make_features nj={nj}: {num_utts} utts, {total:.0f} s of audio in {wall:.2f} s wall = "
                  f"{total / wall:.0f}x real time, {num_utts / wall:.1f} utts/s (includes job start-up)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the single-waveform benchmark")
    parser.add_argument("--num-utts", type=int, default=100, help="utterances in the stage benchmark")
    parser.add_argument("--utt-seconds", type=float, default=8.0, help="length of each stage-benchmark utterance")
    parser.add_argument("--nj", type=int, nargs="+", default=[1, 2], help="job counts to run the stage with")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    bench_frontend(args.seconds)
    bench_stage(args.num_utts, args.utt_seconds, args.nj)


if __name__ == "__main__":
    main()
