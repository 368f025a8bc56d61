"""SpeechBrain's ECAPA-TDNN in SpeechBrain and imported into speakernet: speed and agreement, one run.

Embeds the same files with SpeechBrain's own pipeline (``EncoderClassifier.encode_batch``, in
SpeechBrain's environment, a subprocess) and with the imported model dir (PyTorch in exact float32,
the default; the same with subnormal numbers not flushed, as torch runs by default; PyTorch in
bfloat16, the lossy opt-in ``precision="bf16"``, where the CPU has it; and the ONNX export through
onnxruntime when ``--export-dir`` is given), one thread each, file by file, audio
already in memory (front-end + network timed). The sides run in rounds, alternately, so a shared
machine's load falls on all of them; the real-time factor of each side is its median over the
rounds, and the table prints the speed-up over SpeechBrain and the lowest cosine similarity of a
file's embedding to SpeechBrain's.

Setup (offline; see ../shared/peers/setup_speechbrain_ecapa.sh):
    setup_speechbrain_ecapa.sh SB
    python -m speakernet.bin.import_model --format speechbrain --source SB/ecapa_model --out-dir exp/sb_ecapa
    python -m speakernet.bin.export --exp-dir exp/sb_ecapa --out-dir exp/sb_ecapa/export --formats onnx
    python benches/bench_speechbrain.py --sb-python SB/venv_sb/bin/python --sb-model SB/ecapa_model \\
        --model-dir exp/sb_ecapa --export-dir exp/sb_ecapa/export --data-root ../shared/data
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from speakernet.inference import SpeakerEmbedder
from speakernet.models.precision import bf16_supported

#: SpeechBrain's side: loads the model once, then per round embeds every file and reports the seconds.
SB_SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    os.environ["HF_HUB_OFFLINE"] = "1"
    import numpy as np, soundfile as sf, torch
    from speechbrain.inference.speaker import EncoderClassifier
    torch.set_num_threads(1)
    model_dir, files, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    encoder = EncoderClassifier.from_hparams(source=model_dir, savedir=model_dir + "_saved",
                                             overrides={"pretrained_path": model_dir}, run_opts={"device": "cpu"})
    audio = [torch.from_numpy(sf.read(f, dtype="float32")[0])[None] for f in files]
    with torch.inference_mode():
        encoder.encode_batch(audio[0])  # warm-up
        embeddings = [encoder.encode_batch(a).squeeze().numpy() for a in audio]
        np.save(out, np.stack(embeddings))
        print("ready", flush=True)
        for line in sys.stdin:  # one round per line
            started = time.perf_counter()
            for a in audio:
                encoder.encode_batch(a)
            print(time.perf_counter() - started, flush=True)
""")


def _time_round(embed, audio: list[np.ndarray]) -> float:
    started = time.perf_counter()
    for samples in audio:
        embed(samples)
    return time.perf_counter() - started


class KeepSubnormals:
    """Runs an embedder with subnormal flushing off (this thread's mode), restoring it after each call."""

    def __init__(self, embedder: SpeakerEmbedder):
        self.embedder = embedder

    def embed(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        torch.set_flush_denormal(False)
        try:
            return self.embedder.embed(samples, sample_rate=sample_rate)
        finally:
            torch.set_flush_denormal(True)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sb-python", required=True, help="python of the SpeechBrain environment")
    parser.add_argument("--sb-model", required=True, help="SpeechBrain's model dir (hyperparams.yaml, *.ckpt)")
    parser.add_argument("--model-dir", required=True, help="the imported speakernet model dir")
    parser.add_argument("--export-dir", help="its ONNX export dir (speakernet.bin.export), to time onnxruntime too")
    parser.add_argument("--data-root", required=True, help="the shared real-speech root (LibriSpeech/...)")
    parser.add_argument("--num-files", type=int, default=10, help="LibriSpeech files to embed")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    files = sorted(Path(args.data_root).glob("LibriSpeech/train-clean-100/*/*/*.flac"))[: args.num_files]
    if not files:
        sys.exit(f"no LibriSpeech files under {args.data_root}")
    audio = [sf.read(f, dtype="float32")[0] for f in files]
    seconds = sum(len(a) for a in audio) / 16000
    sides = {"speakernet torch": SpeakerEmbedder(args.model_dir)}
    # The same model with subnormal numbers on the CPU's slow path, as torch runs by default (and SpeechBrain
    # does): what precision.flush_denormals gains. One thread, so the mode of this thread is all there is.
    sides["speakernet torch, subnormals kept"] = KeepSubnormals(sides["speakernet torch"])
    if bf16_supported():
        sides["speakernet torch bf16"] = SpeakerEmbedder(args.model_dir, precision="bf16")
    if args.export_dir:
        sides["speakernet onnxruntime"] = SpeakerEmbedder(args.export_dir, runtime="onnx")
    with tempfile.TemporaryDirectory() as work:
        reference_path = Path(work) / "sb.npy"
        sb = subprocess.Popen([args.sb_python, "-c", SB_SCRIPT, args.sb_model, json.dumps([str(f) for f in files]),
                               str(reference_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert sb.stdout.readline().strip() == "ready", "SpeechBrain's side did not start"
        reference = np.load(reference_path)
        agreement = {}
        for name, embedder in sides.items():
            embedder.embed(audio[0], sample_rate=16000)  # warm-up
            agreement[name] = float(_cosines(np.stack([embedder.embed(a, sample_rate=16000) for a in audio]),
                                             reference).min())
        times: dict[str, list[float]] = {"speechbrain": [], **{name: [] for name in sides}}
        for _ in range(args.rounds):
            sb.stdin.write("round\n")
            sb.stdin.flush()
            times["speechbrain"].append(float(sb.stdout.readline()))
            for name, embedder in sides.items():
                times[name].append(_time_round(lambda a: embedder.embed(a, sample_rate=16000), audio))
        sb.stdin.close()
        sb.wait()
    print(f"{len(files)} LibriSpeech files, {seconds:.1f} s of audio, 1 thread, median of {args.rounds} rounds")
    print(f"{'pipeline':<34} {'RTF':>8} {'speed-up':>9} {'min cosine to SB':>17}")
    base = statistics.median(times["speechbrain"]) / seconds
    for name, values in times.items():
        rtf = statistics.median(values) / seconds
        cosine = "1 (itself)" if name == "speechbrain" else f"{agreement[name]:.6f}"
        print(f"{name:<34} {rtf:>8.4f} {base / rtf:>8.2f}x {cosine:>17}")


if __name__ == "__main__":
    main()
