"""Tests of wav.scp audio loading: formats, pipes, resampling, channels, segments and bad audio."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import soundfile

from speakernet.data.audio import AudioError, iter_data_dir_audio, load_audio, resample
from speakernet.data.kaldi_dir import DataDirError


def _tone(seconds: float, rate: int, freq: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _write_int16(path, waveform: np.ndarray, rate: int) -> np.ndarray:
    """Writes int16 audio; returns exactly what a reader should get back in [-1, 1]."""
    samples = np.round(waveform * 32767).astype(np.int16)
    soundfile.write(path, samples, rate, subtype="PCM_16")
    return samples.astype(np.float32) / 32768


def _peak_frequency(waveform: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(waveform * np.hanning(len(waveform))))
    return float(np.argmax(spectrum) * rate / len(waveform))


def test_wav_and_flac_read_exactly(tmp_path):
    for name in ("a.wav", "a.flac"):
        expected = _write_int16(tmp_path / name, _tone(0.5, 16000), 16000)
        waveform, rate = load_audio(str(tmp_path / name))
        assert rate == 16000 and waveform.dtype == np.float32 and waveform.ndim == 1
        np.testing.assert_array_equal(waveform, expected)


def test_ogg_reads(tmp_path):
    soundfile.write(tmp_path / "a.ogg", _tone(0.5, 16000), 16000, format="OGG", subtype="VORBIS")
    waveform, rate = load_audio(str(tmp_path / "a.ogg"))
    assert rate == 16000 and abs(len(waveform) - 8000) < 400
    assert _peak_frequency(waveform, rate) == pytest.approx(440, abs=5)


def test_pipe_gives_the_same_samples(tmp_path):
    expected = _write_int16(tmp_path / "a.wav", _tone(0.3, 16000), 16000)
    waveform, rate = load_audio(f"cat {tmp_path / 'a.wav'} |")
    assert rate == 16000
    np.testing.assert_array_equal(waveform, expected)


def test_failing_pipe_names_command_and_stderr():
    with pytest.raises(AudioError) as info:
        load_audio("sh -c 'echo no such corpus file >&2; exit 3' |")
    message = str(info.value)
    assert "exit 3" in message and "code 3" in message and "no such corpus file" in message


def test_8k_is_resampled_to_16k(tmp_path):
    _write_int16(tmp_path / "n.wav", _tone(1.0, 8000, freq=1000), 8000)
    waveform, rate = load_audio(str(tmp_path / "n.wav"), sample_rate=16000)
    assert rate == 16000 and len(waveform) == 16000 and waveform.dtype == np.float32
    assert _peak_frequency(waveform, rate) == pytest.approx(1000, abs=2)
    assert np.abs(waveform[2000:-2000]).max() == pytest.approx(0.5, abs=0.01)
    kept, kept_rate = load_audio(str(tmp_path / "n.wav"), sample_rate=None)
    assert kept_rate == 8000 and len(kept) == 8000
    np.testing.assert_array_equal(resample(kept, 8000, 8000), kept)


def test_stereo_uses_first_channel(tmp_path):
    left, right = _tone(0.2, 16000, 300), _tone(0.2, 16000, 900)
    soundfile.write(tmp_path / "s.wav", np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    waveform, _ = load_audio(str(tmp_path / "s.wav"))
    np.testing.assert_array_equal(waveform, left)


def test_bad_audio_raises_audio_error(tmp_path):
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    soundfile.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.int16), 16000)
    nan = _tone(0.1, 16000)
    nan[10] = np.nan
    soundfile.write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
    cases = {"missing.wav": "does not exist", "corrupt.wav": "cannot decode", "empty.wav": "empty",
             "nan.wav": "NaN"}
    for name, reason in cases.items():
        with pytest.raises(AudioError, match=reason) as info:
            load_audio(str(tmp_path / name))
        assert name in str(info.value)


def test_truncated_wav_file_and_pipe_are_errors_not_short_audio(tmp_path):
    audio = (_tone(3.67, 16000) * 0.5).astype(np.float32)  # 58,720 samples
    soundfile.write(tmp_path / "full.wav", audio, 16000, subtype="PCM_16")
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[:44 + 2 * 9978])  # a copy that stopped short
    with pytest.raises(AudioError, match=r"truncated WAV: .*\(58720 frames declared, 9978 present\)") as info:
        load_audio(str(tmp_path / "cut.wav"))
    assert "cut.wav" in str(info.value)
    with pytest.raises(AudioError, match="truncated WAV"):
        load_audio(f"head -c 30000 {tmp_path / 'full.wav'} |")  # a pipe that stops mid-stream
    # The whole file, a chunk after the audio (padding, LIST) and a pipe's unknown length all read.
    assert load_audio(str(tmp_path / "full.wav"))[0].shape == (58720,)
    (tmp_path / "tail.wav").write_bytes(data + b"LIST\x04\x00\x00\x00abcd")
    assert load_audio(str(tmp_path / "tail.wav"))[0].shape == (58720,)
    streamed = bytearray(data)
    streamed[40:44] = (0xFFFFFFFF).to_bytes(4, "little")  # ffmpeg/sox writing to a pipe
    (tmp_path / "streamed.wav").write_bytes(bytes(streamed))
    assert load_audio(f"cat {tmp_path / 'streamed.wav'} |")[0].shape == (58720,)


def _make_dir(tmp_path, wav_scp: dict[str, str], segments: str | None = None):
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text("".join(f"{k} {v}\n" for k, v in wav_scp.items()))
    if segments is not None:
        (data / "segments").write_text(segments)
    return data


def test_iter_without_segments_and_error_collection(tmp_path):
    good = _write_int16(tmp_path / "g.wav", _tone(0.2, 16000), 16000)
    data = _make_dir(tmp_path, {"u1": str(tmp_path / "g.wav"), "u2": str(tmp_path / "gone.wav"),
                                "u3": f"cat {tmp_path / 'g.wav'} |"})
    errors: list[AudioError] = []
    items = list(iter_data_dir_audio(data, on_error=errors.append))
    assert [utt for utt, _, _ in items] == ["u1", "u3"]
    np.testing.assert_array_equal(items[1][1], good)
    assert len(errors) == 1 and errors[0].utt == "u2" and "u2" in str(errors[0]) and "gone.wav" in str(errors[0])
    with pytest.raises(AudioError, match="u2"):
        list(iter_data_dir_audio(data))
    assert [utt for utt, _, _ in iter_data_dir_audio(data, utts=["u3"])] == ["u3"]
    with pytest.raises(DataDirError, match="nope"):
        list(iter_data_dir_audio(data, utts=["nope"]))


def test_segments_cut_once_per_recording(tmp_path):
    recording = _write_int16(tmp_path / "rec.wav", np.random.default_rng(0).uniform(-0.5, 0.5, 32000), 16000)
    counter = tmp_path / "reads"
    # The pipe appends a line to a counter each time the recording is read.
    data = _make_dir(tmp_path, {"rec": f"sh -c 'echo x >> {counter}; cat {tmp_path / 'rec.wav'}' |"},
                     "rec-a rec 0.00 0.50\nrec-b rec 0.50 1.25\nrec-c rec 1.25 -1\nrec-d rec 1.9 2.3\n")
    got = {utt: wav for utt, wav, rate in iter_data_dir_audio(data)}
    assert counter.read_text().count("x") == 1
    np.testing.assert_array_equal(got["rec-a"], recording[:8000])
    np.testing.assert_array_equal(got["rec-b"], recording[8000:20000])
    np.testing.assert_array_equal(got["rec-c"], recording[20000:])
    np.testing.assert_array_equal(got["rec-d"], recording[30400:])  # 0.3 s overshoot is truncated


def test_segments_errors(tmp_path):
    _write_int16(tmp_path / "rec.wav", _tone(1.0, 16000), 16000)
    data = _make_dir(tmp_path, {"rec": str(tmp_path / "rec.wav")},
                     "rec-a rec 0 0.5\nrec-far rec 0.5 3.0\nrec-x other 0 1\n")
    with pytest.raises(DataDirError, match="other") as info:
        list(iter_data_dir_audio(data))
    assert info.value.key == "rec-x"
    errors: list[AudioError] = []
    items = list(iter_data_dir_audio(data, utts=["rec-a", "rec-far"], on_error=errors.append))
    assert [utt for utt, _, _ in items] == ["rec-a"]
    assert errors[0].utt == "rec-far" and "past the end" in str(errors[0])
    (data / "segments").write_text("rec-a rec 0 0.5\nrec-b rec 0.7 0.2\n")
    with pytest.raises(DataDirError, match="end time 0.2 must be > start time 0.7") as info:
        list(iter_data_dir_audio(data))
    assert info.value.line == 2 and info.value.key == "rec-b"


def test_directory_is_not_audio(tmp_path) -> None:
    with pytest.raises(AudioError, match="is a directory, not an audio file"):
        load_audio(str(tmp_path))


@pytest.mark.parametrize(("rate", "fmt", "subtype"), [
    (8000, "WAV", "PCM_U8"), (16000, "WAV", "PCM_24"), (16000, "WAV", "PCM_32"), (16000, "WAV", "FLOAT"),
    (44100, "WAV", "PCM_16"), (48000, "WAV", "PCM_16"), (48000, "FLAC", "PCM_24"), (22050, "FLAC", "PCM_16"),
    (44100, "MP3", "MPEG_LAYER_III"), (16000, "OGG", "VORBIS"),
])
def test_rates_widths_and_formats_arrive_as_the_same_16k_tone(tmp_path, rate: int, fmt: str, subtype: str) -> None:
    path = tmp_path / f"tone.{fmt.lower()}"
    soundfile.write(path, _tone(1.0, rate, freq=440.0, amplitude=0.5), rate, format=fmt, subtype=subtype)
    waveform, got_rate = load_audio(str(path))
    assert got_rate == 16000 and waveform.dtype == np.float32 and waveform.ndim == 1
    lossy = fmt in ("MP3", "OGG")
    assert abs(len(waveform) - 16000) <= (1200 if lossy else 2)  # encoder delay/padding of lossy codecs
    assert _peak_frequency(waveform, got_rate) == pytest.approx(440, abs=3)
    middle = waveform[3000:-3000]
    assert np.abs(middle).max() == pytest.approx(0.5, abs=0.06 if lossy or subtype == "PCM_U8" else 0.005)


def test_truncated_header_inf_and_hot_floats(tmp_path) -> None:
    soundfile.write(tmp_path / "full.wav", _tone(0.5, 16000), 16000, subtype="PCM_16")
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "head.wav").write_bytes(data[:20])  # stopped inside the header
    with pytest.raises(AudioError, match="cannot decode") as info:
        load_audio(str(tmp_path / "head.wav"))
    assert "head.wav" in str(info.value)
    inf = _tone(0.1, 16000)
    inf[5] = np.inf
    soundfile.write(tmp_path / "inf.wav", inf, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="1 NaN/Inf samples"):
        load_audio(str(tmp_path / "inf.wav"))
    # float audio beyond full scale (a gain applied without limiting) is read as written, not clipped
    hot = _tone(0.2, 16000, amplitude=1.7)
    soundfile.write(tmp_path / "hot.wav", hot, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(str(tmp_path / "hot.wav"))[0], hot)
    # a pipe whose command writes something that is not audio
    with pytest.raises(AudioError, match="cannot decode") as info:
        load_audio("echo not audio |")
    assert "echo not audio" in str(info.value)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_formats_libsndfile_lacks_are_decoded_by_ffmpeg(tmp_path) -> None:
    rate = 16000
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)).astype(np.float32)
    soundfile.write(tmp_path / "a.wav", tone, rate)
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(tmp_path / "a.wav"), str(tmp_path / "a.m4a")],
                   check=True)
    waveform, got_rate = load_audio(str(tmp_path / "a.m4a"))  # as the CLI reads a file it is given
    assert got_rate == rate and abs(len(waveform) - rate) < 2048  # AAC pads with a priming frame
    middle = waveform[4000:12000]  # the same tone: its frequency and level (AAC is lossy)
    peak_hz = np.argmax(np.abs(np.fft.rfft(middle))) * rate / len(middle)
    assert abs(peak_hz - 440) < 4 and np.sqrt(np.mean(middle ** 2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.05)
    (tmp_path / "bad.m4a").write_bytes(b"\x00not audio" * 50)
    with pytest.raises(AudioError, match=r"ffmpeg .*bad\.m4a"):
        load_audio(str(tmp_path / "bad.m4a"))
    (tmp_path / "bad.wav").write_bytes(b"\x00not audio" * 50)  # a format libsndfile reads: its own error
    with pytest.raises(AudioError, match=r"bad\.wav.*cannot decode audio"):
        load_audio(str(tmp_path / "bad.wav"))
