"""Peak memory and time of embedding one long recording: chunked (the default) vs whole.

Each case runs in a fresh process (so its peak resident memory is its own): write a WAV of
``--minutes`` of speech-like noise, then read it, compute fbank + VAD, normalise and embed it with
an ECAPA-TDNN c512 (as ``speakernet embed`` and ``extract`` do), either in chunks of
``extract.max_frames`` (6000 frames, 60 s) averaged, or whole (``max_frames=0``, what extraction
did before). Memory does not depend on the weights, so the model is untrained.

Usage:
    python benches/bench_long_audio.py                      # 60 min chunked, 10 min chunked and whole
    python benches/bench_long_audio.py --cases 60:6000 20:0
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


def _case(minutes: float, max_frames: int, work: str) -> dict[str, float]:
    import numpy as np
    import soundfile
    import torch

    from speakernet.backend.extract import forward_windows, full_windows, prepare_features
    from speakernet.data.audio import load_audio
    from speakernet.features.fbank import FbankConfig, compute_fbank_and_energy
    from speakernet.features.vad import compute_vad
    from speakernet.models import build_model

    torch.set_num_threads(2)
    path = Path(work) / f"long_{minutes:g}.wav"
    if not path.is_file():
        rng = np.random.default_rng(0)
        with soundfile.SoundFile(path, "w", 16000, 1, "PCM_16") as handle:
            for _ in range(int(minutes * 60)):  # one second at a time: writing must not dominate the peak
                envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * np.arange(16000) / 16000)
                handle.write((0.1 * envelope * rng.standard_normal(16000)).astype(np.float32))
    model = build_model("ECAPA_TDNN", feat_dim=80, channels=512).eval()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    with torch.inference_mode():
        waveform, _ = load_audio(str(path), 16000)
        fbank, energy = compute_fbank_and_energy(waveform, FbankConfig())
        del waveform
        vad = compute_vad(energy)
        windows = torch.from_numpy(full_windows(prepare_features(fbank, vad, 50), max_frames))
        del fbank
        embedding = forward_windows(model, windows, len(windows) > 1, max_frames).mean(axis=0)
    seconds = time.perf_counter() - started
    assert embedding.shape == (192,)
    return {"minutes": minutes, "max_frames": max_frames, "seconds": seconds,
            "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "model_loaded_mib": base}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["60:6000", "10:6000", "10:0"],
                        help="MINUTES:MAX_FRAMES per case (0: the whole recording at once)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        minutes, max_frames = args.one.split(":")
        print(json.dumps(_case(float(minutes), int(max_frames), args.work)))
        return
    print(f"{'minutes':>7} {'max_frames':>10} {'seconds':>8} {'peak MiB':>9} {'RTF':>7}")
    with tempfile.TemporaryDirectory() as work:
        for case in args.cases:
            result = subprocess.run([sys.executable, __file__, "--one", case, "--work", work], capture_output=True,
                                    text=True)
            if result.returncode != 0:
                reason = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else result.returncode
                print(f"{case}: failed ({reason})")
                continue
            row = json.loads(result.stdout.strip().splitlines()[-1])
            print(f"{row['minutes']:>7g} {row['max_frames']:>10d} {row['seconds']:>8.1f} {row['peak_mib']:>9.0f} "
                  f"{row['seconds'] / (row['minutes'] * 60):>7.4f}")


if __name__ == "__main__":
    main()
