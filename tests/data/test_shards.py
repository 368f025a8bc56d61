"""Tar shards: the round trip, the epoch plan's splits, determinism with workers, resume, errors, the stage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from speakernet.bin.make_shards import main as make_shards_main
from speakernet.data.audio import cut_segment, load_audio
from speakernet.data.audio_dataset import AudioCropDataset
from speakernet.data.kaldi_dir import read_scp, read_segments
from speakernet.data.shards.dataset import ShardDataset, ShardPlan, shuffle_buffer_order
from speakernet.data.shards.format import SHARD_LIST_NAME, ShardError, decode_audio, iter_shard, read_index
from speakernet.data.shards.stage import make_shards
from speakernet.data.spec_augment import SpecAugment
from speakernet.features.fbank import FbankConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from training_data import make_audio_dir, make_shard_dir  # noqa: E402

FRONTEND = FbankConfig(num_mel_bins=20)
SPK2LABEL = {f"spk{s:02d}": s for s in range(4)}


def _source_audio(data_dir: Path) -> dict[str, np.ndarray]:
    wav_scp = read_scp(data_dir / "wav.scp")
    if not (data_dir / "segments").is_file():
        return {utt: load_audio(spec)[0] for utt, spec in wav_scp.items()}
    audio = {}
    for utt, (recording, start, end) in read_segments(data_dir / "segments").items():
        waveform, rate = load_audio(wav_scp[recording])
        audio[utt] = cut_segment(waveform, rate, start, end, wav_scp[recording])
    return audio


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 17-utterance audio dir of the training tests in 6 shards of 3 (the first holds the short one)."""
    return make_shard_dir(tmp_path_factory.mktemp("sharded"))


def _dataset(data_dir: Path, **kwargs) -> ShardDataset:
    options = {"batch_size": 2, "lanes": 2, "buffer_size": 4, "seed": 3, **kwargs}
    return ShardDataset(data_dir, SPK2LABEL, 50, 40, FRONTEND, **options)


def _batches(dataset: ShardDataset, epoch: int, start: int = 0, workers: int = 0) -> list:
    dataset.set_epoch(epoch, start)
    return list(torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers))


@pytest.mark.parametrize("layout", ["files", "segments"])
def test_every_utterance_once_with_its_speaker_and_its_exact_samples(tmp_path: Path, layout: str) -> None:
    data_dir = make_audio_dir(tmp_path, segments=layout == "segments")
    make_shards(data_dir, tmp_path / "shards", utts_per_shard=5)
    source = _source_audio(data_dir)
    # dealt in a seeded random order: each shard mixes speakers (in sorted order, each would hold one)
    assert all(len(set(read_index(line).speakers)) > 1 for line in (data_dir / SHARD_LIST_NAME).read_text().split())
    utt2spk = read_scp(data_dir / "utt2spk")
    seen = []
    for line in (data_dir / SHARD_LIST_NAME).read_text().splitlines():
        index = read_index(line)
        for entry, data, speaker in iter_shard(index):
            utt = index.utts[entry]
            seen.append(utt)
            waveform, rate = decode_audio(data)
            assert rate == 16000 and speaker == utt2spk[utt] == index.speakers[entry]
            assert waveform.dtype == np.float32 and np.array_equal(waveform, source[utt]), utt
            assert index.num_samples[entry] == len(source[utt]) and index.exts[entry] == "flac"
    assert sorted(seen) == sorted(utt2spk) and len(seen) == len(set(seen)) == 17
    assert len((data_dir / SHARD_LIST_NAME).read_text().splitlines()) == 4  # 5 + 4 + 4 + 4


def test_float_audio_is_kept_exactly_as_float_wav(tmp_path: Path) -> None:
    data_dir = make_audio_dir(tmp_path, num_speakers=2, utts_per_speaker=2)
    wav_scp = read_scp(data_dir / "wav.scp")
    utt = sorted(wav_scp)[0]
    waveform = np.random.default_rng(1).uniform(-0.5, 0.5, 12000).astype(np.float32)
    soundfile.write(wav_scp[utt], waveform, 16000, subtype="FLOAT")
    make_shards(data_dir, tmp_path / "shards", utts_per_shard=10)
    index = read_index((data_dir / SHARD_LIST_NAME).read_text().split()[0])
    entry, data, _ = next(iter_shard(index, {index.utts.index(utt)}))
    assert index.exts[entry] == "wav" and np.array_equal(decode_audio(data)[0], waveform)


def test_ranks_and_lanes_split_the_utterances_and_workers_the_lanes_exactly_once() -> None:
    sizes = [10] * 13 + [4]
    for world_size in (1, 2):
        plans = [ShardPlan(sizes, batch_size=3, lanes=4, buffer_size=5, seed=1, rank=rank, world_size=world_size)
                 for rank in range(world_size)]
        assert len({len(plan) for plan in plans}) == 1 and len(plans[0]) == 4 * (134 // (4 * world_size) // 3)
        for epoch in (0, 1):
            lanes = [lane for plan in plans for lane in plan.lane_segments(epoch)]
            slots = sorted((shard, slot) for lane in lanes for shard, begin, stop in lane
                           for slot in range(begin, stop))
            assert slots == [(shard, slot) for shard, size in enumerate(sizes) for slot in range(size)]  # each once
            # whole shards, but for the two where a lane's run begins and ends
            assert all((begin, stop) == (0, sizes[shard]) for lane in lanes for shard, begin, stop in lane[1:-1])
            for plan in plans:
                for lane, segments in enumerate(plan.lane_segments(epoch)):  # distinct utterances of its own run
                    positions = plan.lane_batches_of(epoch, lane)[:, :, 0].ravel()
                    assert len(set(positions.tolist())) == len(positions)
                    assert positions.max() < sum(stop - first for _, first, stop in segments)
        assert plans[0].lane_segments(0) != plans[0].lane_segments(1)
    plan = ShardPlan(sizes, batch_size=3, lanes=4, buffer_size=5)
    for workers in (1, 2, 4):
        for start in (0, 5):
            batches = [list(plan.worker_batches(w, workers, start)) for w in range(workers)]
            assert sorted(sum(batches, [])) == list(range(start, len(plan)))
            lanes = [plan.worker_lanes(w, workers, start) for w in range(workers)]
            assert sorted(sum(lanes, [])) == list(range(4))  # each lane read by one worker
            for worker in range(workers):
                assert {batch % 4 for batch in batches[worker]} <= set(lanes[worker])
    with pytest.raises(ValueError, match="num_workers=3 does not divide data.shard_lanes=4"):
        plan.worker_batches(0, 3)
    with pytest.raises(ValueError, match="134 utterances cannot give each of 4 lane"):
        ShardPlan(sizes, batch_size=3, lanes=4, buffer_size=5, world_size=12)


def test_the_shuffle_buffer_emits_each_item_once_within_its_window() -> None:
    order = shuffle_buffer_order(50, 8, np.random.default_rng(0))
    assert sorted(order.tolist()) == list(range(50))
    assert all(emitted < position for emitted, position in zip(order[:42], range(8, 50)))  # a reader holds 8
    assert shuffle_buffer_order(50, 100, np.random.default_rng(0)).tolist() != list(range(50))


def test_batches_are_the_same_with_0_and_2_workers_and_are_audio_crop_dataset_crops(sharded: Path) -> None:
    dataset = _dataset(sharded, speed_perturb=True, spec_augment=SpecAugment(probability=0.5))
    assert len(dataset) == 16 and dataset.dropped == {"spk00-short": "too_few_frames 18<40"}
    alone, workers = _batches(dataset, 1), _batches(dataset, 1, workers=2)
    assert len(alone) == len(dataset.plan) == 8  # all 16 utterances: 2 lanes of 4 batches of 2
    for (feats_0, labels_0), (feats_2, labels_2) in zip(alone, workers, strict=True):
        assert feats_0.shape == (2, 50, 20) and torch.equal(feats_0, feats_2) and torch.equal(labels_0, labels_2)
    assert not torch.equal(torch.cat([f for f, _ in alone]), torch.cat([f for f, _ in _batches(dataset, 2)]))
    # a crop from a shard is the crop AudioCropDataset makes of the same file with the same seed
    files = AudioCropDataset(sharded, 50, 40, SPK2LABEL, FRONTEND, SpecAugment(probability=0.5), speed_perturb=True)
    first = dataset.plan.lane_batches_of(1, 0)[0]  # batch 0 is lane 0's first
    stream = [(shard, slot) for shard, begin, stop in dataset.plan.lane_segments(1)[0] for slot in range(begin, stop)]
    for row, (position, seed) in enumerate(first):
        shard, slot = stream[position]
        utt = dataset.shards[shard].index.utts[dataset.shards[shard].entries[slot]]
        feats, label = files[(files.utts.index(utt), int(seed))]
        assert torch.equal(feats, alone[0][0][row]) and label == int(alone[0][1][row])


def test_a_resumed_epoch_gives_exactly_the_remaining_batches(sharded: Path) -> None:
    dataset = _dataset(sharded, speed_perturb=True)
    full = _batches(dataset, 0)
    for start, workers in ((3, 0), (3, 2), (4, 2)):
        resumed = _batches(dataset, 0, start, workers)
        assert len(resumed) == len(full) - start
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(full[start:], resumed))


def test_missing_and_corrupt_shards_are_named(sharded: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(sharded, copy)
    lines = (copy / SHARD_LIST_NAME).read_text().splitlines()
    shards = tmp_path / "shards"
    shutil.copytree(Path(lines[0]).parent, shards)
    (copy / SHARD_LIST_NAME).write_text("".join(f"{shards / Path(line).name}\n" for line in lines))
    _dataset(copy)  # the copy as it is reads
    (shards / "shard-000002.tar").unlink()
    with pytest.raises(ShardError, match=rf"shards.list:3: shard {shards / 'shard-000002.tar'} does not exist"):
        _dataset(copy)
    (shards / "shard-000002.tar").write_bytes((shards / "shard-000001.tar").read_bytes()[:5000])
    with pytest.raises(ShardError, match=r"shards.list:3: shard .*shard-000002.tar is corrupt or was changed: 5000 "
                                         r"bytes"):
        _dataset(copy)
    (copy / SHARD_LIST_NAME).unlink()
    with pytest.raises(ShardError, match=r"shards.list does not exist: .*python -m speakernet.bin.make_shards"):
        _dataset(copy)


def _file_states(shard_dir: Path) -> dict[str, tuple[bytes, int]]:
    return {path.name: (path.read_bytes(), path.stat().st_mtime_ns) for path in sorted(shard_dir.glob("shard-*"))}


def test_make_shards_with_2_jobs_a_killed_run_a_rerun_and_bad_audio(tmp_path: Path, capfd) -> None:
    data_dir = make_audio_dir(tmp_path / "corpus")
    clean = tmp_path / "clean"
    args = ["--data-dir", str(data_dir), "--utts-per-shard", "4", "--nj", "2", "--cmd", "run.pl"]
    assert make_shards_main(args + ["--shard-dir", str(clean)]) == 0
    expected = {name: data for name, (data, _) in _file_states(clean).items()}
    assert len(expected) == 10 and (clean / "log" / "make_shards.2.log").is_file()  # 5 shards: 4, 4, 3, 3, 3
    assert "utts/s" in capfd.readouterr().err

    # killed in job 1's second shard (SIGKILL of the stage and its jobs), then run again
    killed = tmp_path / "killed"
    env = {**os.environ, "SPEAKERNET_FAULT": "shards.utt@6",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
    stage = subprocess.run([sys.executable, "-m", "speakernet.bin.make_shards", *args, "--shard-dir", str(killed)],
                           env=env, start_new_session=True, capture_output=True, check=False)
    assert stage.returncode == -signal.SIGKILL and not (data_dir / SHARD_LIST_NAME).exists()
    left = _file_states(killed)
    assert 0 < len(left) < 10 and all(expected[name] == data for name, (data, _) in left.items())
    assert make_shards_main(args + ["--shard-dir", str(killed)]) == 0
    again = _file_states(killed)
    assert {name: data for name, (data, _) in again.items()} == expected  # the same bytes as an uninterrupted run
    finished = [name for name in left if name.endswith(".json")]  # a shard is finished once its index is written
    finished += [name.replace(".json", ".tar") for name in finished]
    assert finished and all(again[name][1] == left[name][1] for name in finished)  # and is not rewritten
    assert (data_dir / SHARD_LIST_NAME).read_text().splitlines()[0] == str(killed.resolve() / "shard-000000.tar")

    # a changed file (job 1's shard 2) and a bad one (job 2's shard 4): shard 2 alone is rewritten, and the
    # stage fails naming the bad file's key, its job and its log
    wav_scp = read_scp(data_dir / "wav.scp")
    changed_utt, bad_utt = (read_index(killed / f"shard-00000{number}.tar").utts[0] for number in (2, 4))
    soundfile.write(wav_scp[changed_utt], np.zeros(16000, dtype=np.float32), 16000, subtype="PCM_16")
    Path(wav_scp[bad_utt]).write_bytes(b"RIFF not a wav")
    capfd.readouterr()
    assert make_shards_main(args + ["--shard-dir", str(killed)]) == 1
    error = [line for line in capfd.readouterr().err.splitlines() if " ERROR " in line][-1]
    assert f"1 of 2 shard jobs failed (1 bad utterances: {bad_utt}; the first: utterance '{bad_utt}' (" in error
    assert "cannot decode audio" in error and "make_shards.2.log" in error
    assert not (data_dir / SHARD_LIST_NAME).exists()
    now = _file_states(killed)
    changed = [name for name in again if name not in now or now[name][1] != again[name][1]]
    assert changed == ["shard-000002.json", "shard-000002.tar", "shard-000004.json"]  # the bad shard: no index
