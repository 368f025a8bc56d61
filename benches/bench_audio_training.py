"""Throughput of training from audio: ``AudioCropDataset`` items/s with and without online augmentation.

It writes a small synthetic audio dir (coloured-noise "speakers", 2-4 s utterances, 16-bit wav) and
tiny noise and RIR source dirs in a temporary dir, then times 200-frame crops of 80-bin fbank:

- ``plain``: no augmentation; ``noise+reverb``: every crop augmented (``Augmenter`` with probability 1,
  half reverberated, half noisy, as WeSpeaker at p = 1); ``speed``: speed perturbation 0.9/1.0/1.1;
- a ``DataLoader`` with 0 and 1 workers (noise+reverb) feeding a tiny model's training step, with the
  fraction of the time spent waiting for the next batch.

The cases run interleaved, A B C then C B A, for ``--rounds`` rounds, so a load change on the shared
machine hits them alike; compare the ratios to ``plain``, not the absolute figures of two runs. Not run
by CI::

    PYTHONPATH=. OMP_NUM_THREADS=1 python benches/bench_audio_training.py --items 200 --rounds 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile
import torch
from torch import nn

from speakernet.data.audio_dataset import AudioCropDataset
from speakernet.data.augment.augmenter import Augmenter
from speakernet.data.dataset import collate_crops
from speakernet.data.kaldi_dir import utt2spk_to_spk2utt, write_scp
from speakernet.data.prepare.noise_dir import prepare_noise_dir

RATE = 16000


def make_corpus(root: Path, num_speakers: int = 8, utts_per_speaker: int = 6, seed: int = 0) -> dict[str, Path]:
    """Writes the audio dir (``root/data``) and the noise and RIR source dirs; returns their paths."""
    rng = np.random.default_rng(seed)
    wav_dir, data_dir = root / "wav", root / "data"
    wav_dir.mkdir(parents=True)
    data_dir.mkdir()
    utt2spk, wav_scp = {}, {}
    for s in range(num_speakers):
        colour = rng.normal(0, 1, 16) * np.exp(-np.arange(16) / rng.uniform(1, 6))
        for u in range(utts_per_speaker):
            utt = f"spk{s:02d}-utt{u:02d}"
            noise = np.convolve(rng.normal(0, 1, int(rng.uniform(2, 4) * RATE)), colour, mode="same")
            path = wav_dir / f"{utt}.wav"
            soundfile.write(path, (0.3 * noise / np.abs(noise).max()).astype(np.float32), RATE, subtype="PCM_16")
            utt2spk[utt], wav_scp[utt] = f"spk{s:02d}", str(path)
    write_scp(data_dir / "wav.scp", wav_scp)
    write_scp(data_dir / "utt2spk", utt2spk)
    write_scp(data_dir / "spk2utt", utt2spk_to_spk2utt(utt2spk))
    dirs = {"data": data_dir}
    for name, count, length in (("noise", 6, 5 * RATE), ("rirs", 6, RATE // 2)):
        folder = root / f"{name}_audio"
        folder.mkdir()
        for index in range(count):
            samples = rng.normal(0, 0.1, length)
            if name == "rirs":
                samples *= np.exp(-np.arange(length) / (0.05 * RATE))
            soundfile.write(folder / f"{name}{index}.wav", samples.astype(np.float32), RATE, subtype="PCM_16")
        prepare_noise_dir(folder, root / name)
        dirs[name] = root / name
    return dirs


def items_per_second(dataset: AudioCropDataset, items: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    plan = [(int(rng.integers(len(dataset))), int(rng.integers(2**31))) for _ in range(items)]
    start = time.perf_counter()
    for item in plan:
        dataset[item]
    return items / (time.perf_counter() - start)


def loader_run(
    dataset: AudioCropDataset, workers: int, batches: int, batch_size: int, seed: int
) -> tuple[float, float]:
    """Items/s of a DataLoader feeding a tiny model's training steps, and the fraction spent waiting for data."""
    rng = np.random.default_rng(seed)
    plan = [[(int(rng.integers(len(dataset))), int(rng.integers(2**31))) for _ in range(batch_size)]
            for _ in range(batches)]
    model = nn.Sequential(nn.Conv1d(80, 128, 5), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                          nn.Linear(128, dataset.num_classes))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=plan, collate_fn=collate_crops, num_workers=workers)
    waited = 0.0
    start = time.perf_counter()
    before = start
    for feats, labels in loader:
        waited += time.perf_counter() - before
        loss = nn.functional.cross_entropy(model(feats.transpose(1, 2)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        before = time.perf_counter()
    total = time.perf_counter() - start
    return batches * batch_size / total, waited / total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=200, help="items per dataset case and round")
    parser.add_argument("--batches", type=int, default=10, help="batches per DataLoader case and round")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        dirs = make_corpus(Path(tmp))
        augmenter = Augmenter({"probability": 1.0, "reverb_probability": 0.5,
                               "reverb": {"dirs": [str(dirs["rirs"])]}, "noise": {"dirs": [str(dirs["noise"])]}})
        datasets = {
            "plain": AudioCropDataset(dirs["data"], crop_frames=200),
            "noise+reverb": AudioCropDataset(dirs["data"], crop_frames=200, augment=augmenter),
            "speed": AudioCropDataset(dirs["data"], crop_frames=200, speed_perturb=True),
        }
        cases: dict[str, Callable[[int], tuple[float, float | None]]] = {
            **{name: (lambda seed, d=dataset: (items_per_second(d, args.items, seed), None))
               for name, dataset in datasets.items()},
            **{f"loader noise+reverb, {workers} worker(s)":
               (lambda seed, w=workers: loader_run(datasets["noise+reverb"], w, args.batches, args.batch_size, seed))
               for workers in (0, 1)},
            "loader plain, 0 workers": lambda seed: loader_run(datasets["plain"], 0, args.batches, args.batch_size,
                                                               seed),
        }
        for case in cases.values():  # warm-up: imports, page cache, first DataLoader
            case(99)
        results: dict[str, list[tuple[float, float | None]]] = {name: [] for name in cases}
        names = list(cases)
        for round_index in range(args.rounds):
            for name in names if round_index % 2 == 0 else reversed(names):
                results[name].append(cases[name](round_index))
    base = statistics.median(rate for rate, _ in results["plain"])
    loader_base = statistics.median(rate for rate, _ in results["loader plain, 0 workers"])
    print(f"{'case':40s} {'items/s':>9s} {'ratio':>7s} {'data wait':>10s}")
    for name, values in results.items():
        rate = statistics.median(value for value, _ in values)
        reference = loader_base if name.startswith("loader") else base
        waits = [wait for _, wait in values if wait is not None]
        wait = f"{statistics.median(waits):10.0%}" if waits else f"{'':10s}"
        print(f"{name:40s} {rate:9.1f} {rate / reference:7.2f} {wait}")
    print("ratios: dataset cases to 'plain', loader cases to 'loader plain, 0 workers' (medians of "
          f"{args.rounds} interleaved rounds)")


if __name__ == "__main__":
    main()
