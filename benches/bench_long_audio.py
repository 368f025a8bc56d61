"""Peak memory and time of embedding one long recording, through ``embed`` and ``extract``.

Each case runs in a fresh process (so its peak resident memory is its own). The recording is
``MINUTES`` of speech-like noise. ``embed`` cases run :class:`speakernet.inference.SpeakerEmbedder`
on the WAV file, the code path of ``speakernet embed`` and the Python API: reading, fbank, VAD,
CMN and the model. ``extract`` cases run :func:`speakernet.backend.extract.extract_embeddings`
(the ``extract`` stage) on a data dir holding the recording's fbank and VAD, written beforehand in
another process. The model is an untrained ECAPA-TDNN c512 in a throw-away exp dir (memory does not
depend on the weights); ``MAX_FRAMES`` is its ``extract.max_frames`` (6000 = 60 s chunks, averaged;
0: the whole recording at once, what extraction did before chunking).

Usage:
    python benches/bench_long_audio.py     # embed 60 min, extract 60 min, embed 10 min chunked and whole
    python benches/bench_long_audio.py --cases embed:60:6000 extract:20:0
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PATHS = ("embed", "extract")


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _wav(work: Path, minutes: float) -> Path:
    import numpy as np
    import soundfile

    path = work / f"long_{minutes:g}.wav"
    if not path.is_file():
        rng = np.random.default_rng(0)
        with soundfile.SoundFile(path, "w", 16000, 1, "PCM_16") as handle:
            for _ in range(int(minutes * 60)):  # one second at a time: writing must not dominate the peak
                envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * np.arange(16000) / 16000)
                handle.write((0.1 * envelope * rng.standard_normal(16000)).astype(np.float32))
    return path


def _exp_dir(work: Path, max_frames: int) -> Path:
    from speakernet.config import load_config, save_config
    from speakernet.models import build_model
    from speakernet.training.checkpoint import save_checkpoint

    exp = work / f"exp_{max_frames}"
    if not (exp / "checkpoints" / "init.pt").is_file():
        config = load_config(None, ["model=ECAPA_TDNN", "model_args.channels=512",
                                    f"extract.max_frames={max_frames}"])
        (exp / "checkpoints").mkdir(parents=True, exist_ok=True)
        save_config(config, exp / "config.yaml")
        model = build_model(config["model"], feat_dim=config["data"]["feat_dim"], **config["model_args"])
        save_checkpoint({"model": model.state_dict()}, exp / "checkpoints" / "init.pt")
    return exp


def _feature_dir(work: Path, minutes: float) -> Path:
    """A data dir with the recording's fbank and VAD (made here, in the parent's helper process)."""
    import kaldiio

    from speakernet.data.audio import load_audio
    from speakernet.features.fbank import compute_fbank_and_energy
    from speakernet.features.vad import compute_vad

    data = work / f"data_{minutes:g}"
    if not (data / "vad.scp").is_file():
        data.mkdir(parents=True, exist_ok=True)
        fbank, energy = compute_fbank_and_energy(load_audio(str(_wav(work, minutes)), 16000)[0])
        with kaldiio.WriteHelper(f"ark,scp:{data / 'feats.ark'},{data / 'feats.scp'}") as writer:
            writer("long", fbank)
        with kaldiio.WriteHelper(f"ark,scp:{data / 'vad.ark'},{data / 'vad.scp'}") as writer:
            writer("long", compute_vad(energy))
    return data


def _case(path: str, minutes: float, max_frames: int, work: Path) -> dict[str, float | str]:
    import torch

    torch.set_num_threads(2)
    if path == "embed":
        from speakernet.inference import SpeakerEmbedder

        wav = _wav(work, minutes)
        embedder = SpeakerEmbedder(_exp_dir(work, max_frames), "init")
        base = _peak_mib()
        started = time.perf_counter()
        embedding = embedder.embed(str(wav))
    else:
        from speakernet.backend.embeddings import load_embeddings
        from speakernet.backend.extract import extract_embeddings
        from speakernet.training.checkpoint import load_model

        data = work / f"data_{minutes:g}"
        model, _ = load_model(_exp_dir(work, max_frames), "init")
        base = _peak_mib()
        started = time.perf_counter()
        extract_embeddings(model, data, work / f"out_{minutes:g}_{max_frames}", max_frames=max_frames)
        embedding = load_embeddings(work / f"out_{minutes:g}_{max_frames}" / "xvector.scp")[1][0]
    seconds = time.perf_counter() - started
    assert embedding.shape == (192,)
    return {"path": path, "minutes": minutes, "max_frames": max_frames, "seconds": seconds,
            "peak_mib": _peak_mib(), "model_loaded_mib": base}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["embed:60:6000", "extract:60:6000", "embed:10:6000",
                                                       "embed:10:0"],
                        help="PATH:MINUTES:MAX_FRAMES per case, PATH one of embed, extract (0: whole at once)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--prepare", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare:
        _feature_dir(Path(args.work), float(args.prepare))
        return
    if args.one:
        path, minutes, max_frames = args.one.split(":")
        print(json.dumps(_case(path, float(minutes), int(max_frames), Path(args.work))))
        return
    for case in args.cases:
        if len(case.split(":")) != 3 or case.split(":")[0] not in PATHS:
            parser.error(f"--cases: '{case}' is not PATH:MINUTES:MAX_FRAMES with PATH one of {', '.join(PATHS)}")
    print(f"{'path':>7} {'minutes':>7} {'max_frames':>10} {'seconds':>8} {'peak MiB':>9} {'model MiB':>9} {'RTF':>7}")
    with tempfile.TemporaryDirectory() as work:
        for case in args.cases:
            steps = [[sys.executable, __file__, "--one", case, "--work", work]]
            if case.startswith("extract:"):
                steps.insert(0, [sys.executable, __file__, "--prepare", case.split(":")[1], "--work", work])
            for step in steps:
                result = subprocess.run(step, capture_output=True, text=True)
                if result.returncode != 0:
                    reason = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else result.returncode
                    print(f"{case}: failed ({reason})")
                    break
            else:
                row = json.loads(result.stdout.strip().splitlines()[-1])
                print(f"{row['path']:>7} {row['minutes']:>7g} {row['max_frames']:>10d} {row['seconds']:>8.1f} "
                      f"{row['peak_mib']:>9.0f} {row['model_loaded_mib']:>9.0f} "
                      f"{row['seconds'] / (row['minutes'] * 60):>7.4f}", flush=True)


if __name__ == "__main__":
    main()
