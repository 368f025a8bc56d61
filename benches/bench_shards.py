"""Reading training audio from tar shards vs from one file per utterance, utterances/s and their ratio.

It writes the synthetic audio dir of ``bench_audio_training.py`` (``--speakers`` x ``--utts`` utterances
of 2-4 s, 16-bit wav) and its shards (``make_shards``, FLAC), then times, in interleaved rounds (A B C D,
then D C B A):

- ``read files``: each utterance's wav file opened and decoded whole (``load_audio``), in a random order;
  ``read shards flac`` / ``wav``: every shard read front to back and each utterance decoded whole
  (``iter_shard`` + ``decode_audio``), shards made with ``--audio-format flac`` (the default) and ``wav``;
- ``crops files``: ``AudioCropDataset`` items (200-frame crops of 80-bin fbank; each reads only its
  window of the file) of a random plan; ``crops shards flac`` / ``wav``: a ``ShardDataset`` epoch of as
  many crops (0 workers; each decodes only its window of the member).

The files are in the page cache after the warm-up, so this is the cost of opening and decoding many
small files on a local disk, not of a network file system's latency (where the gap grows). Not run by CI::

    PYTHONPATH=. OMP_NUM_THREADS=1 python benches/bench_shards.py --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from bench_audio_training import make_corpus

from speakernet.data.audio import load_audio
from speakernet.data.audio_dataset import AudioCropDataset
from speakernet.data.kaldi_dir import read_scp
from speakernet.data.shards.dataset import ShardDataset
from speakernet.data.shards.format import decode_audio, iter_shard
from speakernet.data.shards.stage import make_shards


def read_files(wav_scp: dict[str, str], seed: int) -> int:
    utts = list(wav_scp)
    for index in np.random.default_rng(seed).permutation(len(utts)):
        load_audio(wav_scp[utts[index]])
    return len(utts)


def read_shards(dataset: ShardDataset) -> int:
    count = 0
    for shard in dataset.shards:
        for _, data, _ in iter_shard(shard.index):
            decode_audio(data)
            count += 1
    return count


def crops_files(dataset: AudioCropDataset, items: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    for _ in range(items):
        dataset[(int(rng.integers(len(dataset))), int(rng.integers(2**31)))]
    return items


def crops_shards(dataset: ShardDataset, epoch: int) -> int:
    dataset.set_epoch(epoch)
    return sum(len(labels) for _, labels in dataset)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speakers", type=int, default=20)
    parser.add_argument("--utts", type=int, default=25, help="utterances per speaker")
    parser.add_argument("--utts-per-shard", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = make_corpus(Path(tmp), num_speakers=args.speakers, utts_per_speaker=args.utts)["data"]
        wav_scp = read_scp(data_dir / "wav.scp")
        spk2label = {spk: i for i, spk in enumerate(sorted(set(read_scp(data_dir / "utt2spk").values())))}
        files = AudioCropDataset(data_dir, crop_frames=200, spk2label=spk2label)
        shards: dict[str, ShardDataset] = {}
        for audio_format in ("flac", "wav"):  # each run rewrites D/shards.list: the dataset reads it first
            make_shards(data_dir, Path(tmp) / audio_format, utts_per_shard=args.utts_per_shard,
                        audio_format=audio_format)
            shards[audio_format] = ShardDataset(data_dir, spk2label, crop_frames=200, batch_size=16, lanes=1,
                                                buffer_size=200)
        crop_items = len(shards["flac"].plan) * 16
        cases: dict[str, Callable[[int], int]] = {
            "read files": lambda seed: read_files(wav_scp, seed),
            **{f"read shards {kind}": (lambda seed, d=dataset: read_shards(d)) for kind, dataset in shards.items()},
            "crops files": lambda seed: crops_files(files, crop_items, seed),
            **{f"crops shards {kind}": (lambda seed, d=dataset: crops_shards(d, seed))
               for kind, dataset in shards.items()},
        }
        for case in cases.values():  # warm-up: imports, page cache
            case(99)
        rates: dict[str, list[float]] = {name: [] for name in cases}
        names = list(cases)
        for round_index in range(args.rounds):
            for name in names if round_index % 2 == 0 else reversed(names):
                start = time.perf_counter()
                count = cases[name](round_index)
                rates[name].append(count / (time.perf_counter() - start))
    print(f"{len(wav_scp)} utterances of 2-4 s, {args.utts_per_shard} a shard; medians of {args.rounds} interleaved "
          "rounds")
    print(f"{'case':18s} {'utts/s':>9s}")
    for name, values in rates.items():
        print(f"{name:18s} {statistics.median(values):9.1f}")
    for what in ("read", "crops"):
        for kind in shards:
            ratio = statistics.median(rates[f"{what} shards {kind}"]) / statistics.median(rates[f"{what} files"])
            print(f"{what}: shards {kind} / files = {ratio:.2f}")

if __name__ == "__main__":
    main()
