"""Training data: fixed-length random crops of precomputed features, with speaker labels."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import kaldiio
import numpy as np
import torch

from speakernet.data.kaldi_dir import DataDirError, read_scp, utt2spk_to_spk2utt
from speakernet.data.spec_augment import SpecAugment
from speakernet.features.cmn import apply_cmn

logger = logging.getLogger(__name__)


def crop_or_pad(feats: np.ndarray, crop_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Takes a random ``crop_frames`` window; shorter inputs are repeat-padded (wrapped).

    Args:
        feats: ``[frames, dim]`` features.
        crop_frames: Output length in frames.
        rng: Random generator deciding the window start.

    Returns:
        ``[crop_frames, dim]`` features.
    """
    frames = feats.shape[0]
    if frames >= crop_frames:
        start = int(rng.integers(0, frames - crop_frames + 1))
        return feats[start : start + crop_frames]
    return np.pad(feats, ((0, crop_frames - frames), (0, 0)), mode="wrap")


class FeatureCropDataset(torch.utils.data.Dataset):
    """Random fixed-length crops of the utterances of a data dir, with per-crop CMN.

    Items are addressed by ``(index, crop_seed)`` so that the crop depends only on the
    sampler's plan, not on which worker process loads it: training is reproducible and
    resumes exactly.

    Args:
        data_dir: Data dir with ``feats.scp``, ``utt2spk`` and (if ``use_vad``) ``vad.scp``.
        crop_frames: Crop length in frames.
        min_frames: Utterances with fewer (voiced) frames are left out (listed in :attr:`dropped`).
        use_vad: Drop frames that ``vad.scp`` marks unvoiced before cropping.
        spk2label: Speaker -> class index; by default the C-sorted speakers of the dir.
        spec_augment: Masks applied to each normalised crop (None: none).

    Attributes:
        dropped: Utterance -> reason, for each one left out (``too_few_voiced_frames 37<100``, or
            ``too_few_frames`` without VAD), in feats.scp order; the trainer writes it to the exp dir.
    """

    def __init__(
        self,
        data_dir: str | Path,
        crop_frames: int = 200,
        min_frames: int = 100,
        use_vad: bool = True,
        spk2label: dict[str, int] | None = None,
        spec_augment: SpecAugment | None = None,
    ):
        data_dir = Path(data_dir)
        self.crop_frames = crop_frames
        self.spec_augment = spec_augment
        self.use_vad = use_vad
        feats_scp = read_scp(data_dir / "feats.scp")
        utt2spk = read_scp(data_dir / "utt2spk")
        vad_scp = read_scp(data_dir / "vad.scp") if use_vad else {}
        if spk2label is None:
            spk2label = {spk: i for i, spk in enumerate(utt2spk_to_spk2utt(utt2spk))}
        self.spk2label = spk2label
        num_frames_path = data_dir / "utt2num_frames"
        utt2num_frames = {k: int(v) for k, v in read_scp(num_frames_path).items()} if num_frames_path.is_file() else {}

        self.utts: list[str] = []
        self.feat_specs: list[str] = []
        self.vad_specs: list[str | None] = []
        labels: list[int] = []
        self.dropped: dict[str, str] = {}
        for utt, spec in feats_scp.items():
            if utt not in utt2spk:
                raise DataDirError(data_dir / "utt2spk", "utterance in feats.scp has no speaker", key=utt)
            if utt2spk[utt] not in spk2label:
                raise DataDirError(data_dir / "utt2spk", f"speaker '{utt2spk[utt]}' is not in the label set", key=utt)
            vad_spec = None
            if use_vad:
                if utt not in vad_scp:
                    raise DataDirError(data_dir / "vad.scp", "utterance in feats.scp has no VAD entry", key=utt)
                vad_spec = vad_scp[utt]
                frames = int(np.count_nonzero(kaldiio.load_mat(vad_spec) > 0.5))
            else:
                frames = utt2num_frames.get(utt, -1)
                if frames < 0:
                    frames = kaldiio.load_mat(spec).shape[0]
            if frames < min_frames:
                self.dropped[utt] = f"{'too_few_voiced_frames' if use_vad else 'too_few_frames'} {frames}<{min_frames}"
                continue
            self.utts.append(utt)
            self.feat_specs.append(spec)
            self.vad_specs.append(vad_spec)
            labels.append(spk2label[utt2spk[utt]])
        self.labels = np.asarray(labels, dtype=np.int64)
        if len(self.utts) == 0:
            raise DataDirError(data_dir, f"no utterance has at least {min_frames} (voiced) frames")
        # The count of those left out, with their list, is the trainer's warning (speakernet.utils.dropped).
        logger.info("%s: %d utterances of %d speakers for training (%d with fewer than %d %sframes left out)",
                    data_dir, len(self.utts), len(set(labels)), len(self.dropped), min_frames,
                    "voiced " if use_vad else "")

    def __len__(self) -> int:
        return len(self.utts)

    def load_features(self, index: int) -> np.ndarray:
        """Full (VAD-filtered) feature matrix of utterance ``index``."""
        feats = kaldiio.load_mat(self.feat_specs[index])
        vad_spec = self.vad_specs[index]
        if vad_spec is not None:
            feats = feats[kaldiio.load_mat(vad_spec) > 0.5]
        return np.asarray(feats, dtype=np.float32)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, crop_seed = item
        rng = np.random.default_rng(crop_seed)
        crop = apply_cmn(crop_or_pad(self.load_features(index), self.crop_frames, rng))  # per-crop CMN, mean only
        if self.spec_augment is not None:
            crop = self.spec_augment(crop, rng)
        return torch.from_numpy(np.ascontiguousarray(crop)), int(self.labels[index])


def collate_crops(batch: Sequence[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stacks equal-length crops into ``[B, T, F]`` and labels into ``[B]``."""
    feats = torch.stack([item[0] for item in batch])
    labels = torch.tensor([item[1] for item in batch], dtype=torch.long)
    return feats, labels
