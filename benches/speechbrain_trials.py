"""SpeechBrain's own verification (raw-embedding cosine) of a data dir's trial lists, for the results table.

SpeechBrain's ``SpeakerRecognition.verify_files`` scores the cosine of two raw ECAPA embeddings
(no mean subtraction, no normalisation). This script gives that row beside speakernet's back-ends
on the same trials: every utterance of the data dir is read and resampled to 16 kHz by
speakernet's reader (so both toolkits see the same samples), embedded with SpeechBrain's
``encode_batch`` in SpeechBrain's own environment (a subprocess), and each trial list is scored by
cosine and its EER and minDCF printed.

    python benches/speechbrain_trials.py --sb-python SB/venv_sb/bin/python --sb-model SB/ecapa_model \\
        --data-dir data_sb/test --trials data_sb/test/trials data_sb/test/trials_librispeech
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from speakernet.backend.metrics import compute_eer, compute_min_dcf
from speakernet.data.audio import iter_data_dir_audio
from speakernet.data.kaldi_dir import read_trials

SB_SCRIPT = textwrap.dedent("""
    import os, sys
    os.environ["HF_HUB_OFFLINE"] = "1"
    import numpy as np, soundfile as sf, torch
    from speechbrain.inference.speaker import EncoderClassifier
    model_dir, listing, out = sys.argv[1:4]
    torch.set_num_threads(int(sys.argv[4]))
    encoder = EncoderClassifier.from_hparams(source=model_dir, savedir=model_dir + "_saved",
                                             overrides={"pretrained_path": model_dir}, run_opts={"device": "cpu"})
    files = open(listing).read().split()
    with torch.inference_mode():
        np.save(out, np.stack([encoder.encode_batch(torch.from_numpy(sf.read(f, dtype="float32")[0])[None])
                               .squeeze().numpy() for f in files]))
""")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sb-python", required=True, help="python of the SpeechBrain environment")
    parser.add_argument("--sb-model", required=True, help="SpeechBrain's model dir (hyperparams.yaml, *.ckpt)")
    parser.add_argument("--data-dir", required=True, help="Kaldi data dir of the trials' utterances")
    parser.add_argument("--trials", nargs="+", required=True, help="trial lists over its utterances")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        keys, files = [], []
        for utt, waveform, _ in iter_data_dir_audio(args.data_dir, sample_rate=16000):
            path = Path(work) / f"{len(keys):06d}.wav"
            sf.write(path, waveform, 16000, subtype="FLOAT")
            keys.append(utt)
            files.append(str(path))
        listing = Path(work) / "files"
        listing.write_text("\n".join(files) + "\n")
        started = time.perf_counter()
        subprocess.run([args.sb_python, "-c", SB_SCRIPT, args.sb_model, str(listing), str(Path(work) / "emb.npy"),
                        str(args.threads)], check=True)
        seconds = time.perf_counter() - started
        embeddings = np.load(Path(work) / "emb.npy")
    index = {key: i for i, key in enumerate(keys)}
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    print(f"SpeechBrain embedded {len(keys)} utterances in {seconds:.0f} s; raw-embedding cosine:")
    print(f"{'trials':<28} {'EER %':>7} {'minDCF@0.01':>12}")
    for path in args.trials:
        trials = read_trials(path)
        scores = np.array([unit[index[e]] @ unit[index[t]] for e, t, _ in trials])
        labels = np.array([label == "target" for _, _, label in trials])
        eer = compute_eer(scores, labels)[0]
        print(f"{Path(path).name:<28} {100 * eer:>7.3f} {compute_min_dcf(scores, labels, 0.01)[0]:>12.3f}")


if __name__ == "__main__":
    main()
