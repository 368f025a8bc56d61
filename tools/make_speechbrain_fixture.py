"""Computes the SpeechBrain parity fixture with SpeechBrain itself (run once; the result is committed).

    ../shared/peers/setup_speechbrain_ecapa.sh SB             # SpeechBrain 1.1.2 + spkrec-ecapa-voxceleb, offline
    SB/venv_sb/bin/python tools/make_speechbrain_fixture.py SB/ecapa_model ../shared/data \
        tests/fixtures/speechbrain_ecapa.npz

Writes the raw 192-d ``encode_batch`` embeddings (not normalised) of the files in
``tests/sb_reference.py`` (each alone), of its synthetic signals (each alone, then both as one
zero-padded batch with relative lengths, SpeechBrain's masking), and SpeechBrain's front-end
features of the first synthetic signal, with the checkpoint's sha256 and SpeechBrain's version.
"""

import hashlib
import os
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import speechbrain  # noqa: E402
import torch  # noqa: E402
from speechbrain.inference.speaker import EncoderClassifier  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from sb_reference import REAL_FILES, SAMPLE_RATE, SYNTHETIC, synthetic_signal  # noqa: E402

model_dir, data_root, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2]), Path(sys.argv[3])
encoder = EncoderClassifier.from_hparams(source=str(model_dir), savedir=str(model_dir) + "_saved",
                                         overrides={"pretrained_path": str(model_dir)}, run_opts={"device": "cpu"})
torch.set_num_threads(1)
arrays = {}
with torch.inference_mode():
    for index, name in enumerate(REAL_FILES):
        audio, rate = sf.read(data_root / name, dtype="float32")
        assert rate == SAMPLE_RATE and audio.ndim == 1
        arrays[f"real_{index}"] = encoder.encode_batch(torch.from_numpy(audio)[None]).squeeze().numpy()
    signals = [torch.from_numpy(synthetic_signal(seed, seconds)) for seed, seconds in SYNTHETIC]
    for index, signal in enumerate(signals):
        arrays[f"synthetic_{index}"] = encoder.encode_batch(signal[None]).squeeze().numpy()
    longest = max(len(s) for s in signals)
    batch = torch.stack([torch.nn.functional.pad(s, (0, longest - len(s))) for s in signals])
    lengths = torch.tensor([len(s) / longest for s in signals])
    arrays["padded_batch"] = encoder.encode_batch(batch, lengths).squeeze(1).numpy()
    arrays["padded_lengths"] = lengths.numpy()
    arrays["synthetic_0_fbank"] = encoder.mods.compute_features(signals[0][None]).squeeze(0).numpy()
checkpoint = model_dir / "embedding_model.ckpt"
arrays["checkpoint_sha256"] = np.array(hashlib.sha256(checkpoint.read_bytes()).hexdigest())
arrays["speechbrain_version"] = np.array(speechbrain.__version__)
np.savez_compressed(out, **arrays)
print({key: value.shape for key, value in arrays.items()})
