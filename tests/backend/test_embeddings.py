"""Embedding tables: kaldiio round trips, atomic writes, speaker and global means, error messages."""

from __future__ import annotations

import kaldiio
import numpy as np
import pytest

from speakernet.backend.embeddings import (
    compute_mean_files,
    global_mean,
    load_embeddings,
    read_vector,
    speaker_means,
    write_embeddings,
    write_vector,
)
from speakernet.bin import compute_mean as compute_mean_bin
from speakernet.data.kaldi_dir import DataDirError


def make_table(num=6, dim=5, seed=0):
    rng = np.random.default_rng(seed)
    keys = [f"spk{index % 2}-utt{index}" for index in range(num)]
    return keys, rng.standard_normal((num, dim)).astype(np.float32)


def test_write_and_load_round_trip(tmp_path):
    keys, matrix = make_table()
    ark, scp = tmp_path / "xvector.ark", tmp_path / "xvector.scp"
    write_embeddings(ark, scp, keys, matrix)
    loaded_keys, loaded = load_embeddings(scp)
    assert loaded_keys == keys
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, matrix)
    # The scp names the final archive (not a temporary file) and plain kaldiio reads it.
    for line in scp.read_text().splitlines():
        key, location = line.split()
        assert location.rsplit(":", 1)[0] == str(ark)
    table = kaldiio.load_scp(str(scp))
    np.testing.assert_array_equal(table[keys[3]], matrix[3])
    # No temporary files are left behind.
    assert sorted(path.name for path in tmp_path.iterdir()) == ["xvector.ark", "xvector.scp"]


def test_scp_written_with_a_relative_path_is_read_from_anywhere(tmp_path, monkeypatch):
    keys, matrix = make_table()
    (tmp_path / "exp").mkdir()
    monkeypatch.chdir(tmp_path)
    write_embeddings("exp/xvector.ark", "exp/xvector.scp", keys, matrix)  # as a recipe's relative --exp gives
    assert (tmp_path / "exp" / "xvector.scp").read_text().split()[1].startswith(f"{tmp_path}/exp/xvector.ark:")
    monkeypatch.chdir(tmp_path / "exp")  # a scorer run from elsewhere
    np.testing.assert_array_equal(load_embeddings(tmp_path / "exp" / "xvector.scp")[1], matrix)


def test_load_reads_archives_written_by_kaldiio(tmp_path):
    keys, matrix = make_table(dim=3)
    ark, scp = tmp_path / "a.ark", tmp_path / "a.scp"
    # Vectors and a [1, dim] matrix (as some extractors write) are both accepted.
    kaldiio.save_ark(str(ark), {keys[0]: matrix[0], keys[1]: matrix[1:2]}, scp=str(scp))
    loaded_keys, loaded = load_embeddings(scp)
    assert loaded_keys == keys[:2]
    np.testing.assert_array_equal(loaded, matrix[:2])


def test_failed_write_leaves_existing_files(tmp_path):
    keys, matrix = make_table()
    ark, scp = tmp_path / "xvector.ark", tmp_path / "xvector.scp"
    write_embeddings(ark, scp, keys, matrix)
    before = (ark.read_bytes(), scp.read_bytes())
    with pytest.raises(ValueError, match="duplicate embedding key 'spk0-utt0'"):
        write_embeddings(ark, scp, keys + ["spk0-utt0"], np.vstack([matrix, matrix[:1]]))
    with pytest.raises(ValueError, match="7 keys for 6 embeddings"):
        write_embeddings(ark, scp, keys + ["x"], matrix)
    with pytest.raises(ValueError, match="whitespace"):
        write_embeddings(ark, scp, ["a b"] + keys[1:], matrix)
    assert (ark.read_bytes(), scp.read_bytes()) == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["xvector.ark", "xvector.scp"]


def test_load_errors_name_file_and_key(tmp_path):
    keys, matrix = make_table(num=3, dim=4)
    ark, scp = tmp_path / "xvector.ark", tmp_path / "xvector.scp"
    write_embeddings(ark, scp, keys, matrix)

    with pytest.raises(DataDirError, match="does not exist"):
        load_embeddings(tmp_path / "missing.scp")

    bad_dim = tmp_path / "dim.scp"
    kaldiio.save_ark(str(tmp_path / "dim.ark"), {"a": matrix[0], "b": matrix[1, :3]}, scp=str(bad_dim))
    with pytest.raises(DataDirError, match=r"dim\.scp.*key 'b'.*dimension 3 differs from 4"):
        load_embeddings(bad_dim)

    not_finite = tmp_path / "nan.scp"
    kaldiio.save_ark(str(tmp_path / "nan.ark"), {"a": np.array([1.0, np.nan], dtype=np.float32)}, scp=str(not_finite))
    with pytest.raises(DataDirError, match=r"nan\.scp.*key 'a'.*non-finite"):
        load_embeddings(not_finite)

    missing_ark = tmp_path / "gone.scp"
    missing_ark.write_text(f"spk9-utt9 {tmp_path / 'gone.ark'}:10\n")
    with pytest.raises(DataDirError, match=r"gone\.scp.*key 'spk9-utt9'.*cannot read"):
        load_embeddings(missing_ark)

    duplicate = tmp_path / "dup.scp"
    lines = scp.read_text().splitlines()
    duplicate.write_text("\n".join([lines[0], lines[0]]) + "\n")
    with pytest.raises(DataDirError, match=r"dup\.scp:2.*duplicate"):
        load_embeddings(duplicate)


def test_speaker_means_are_plain_means():
    # Speaker b: [1, 2] and [3, 6] -> [2, 4]; speaker a: [10, 0] alone; speaker c: [2, 0] and [0, 1]
    # -> [1, 0.5] (a mean of length-normalised rows would give [0.5, 0.5] and b would be [0.447, 0.894]).
    keys = ["u1", "u2", "u3", "u4", "u5"]
    matrix = np.array([[1, 2], [10, 0], [3, 6], [2, 0], [0, 1]], dtype=np.float32)
    utt2spk = {"u1": "b", "u2": "a", "u3": "b", "u4": "c", "u5": "c", "u6": "a"}
    speakers, means = speaker_means(keys, matrix, utt2spk)
    assert speakers == ["a", "b", "c"]
    np.testing.assert_allclose(means, [[10, 0], [2, 4], [1, 0.5]])
    assert means.dtype == np.float32
    with pytest.raises(DataDirError, match=r"data/utt2spk \(key 'u5'\)"):
        speaker_means(keys, matrix, {"u1": "b", "u2": "a", "u3": "b", "u4": "c"}, "data/utt2spk")


def test_speaker_means_c_order():
    # Upper case sorts before lower case in C order.
    speakers, _ = speaker_means(["x", "y", "z"], np.eye(3, dtype=np.float32), {"x": "b", "y": "B", "z": "a"})
    assert speakers == ["B", "a", "b"]


def test_global_mean_and_vector_round_trip(tmp_path):
    keys, matrix = make_table(num=50, dim=8)
    mean = global_mean(matrix)
    np.testing.assert_allclose(mean, matrix.astype(np.float64).mean(axis=0), rtol=1e-6)
    path = tmp_path / "mean.vec"
    write_vector(path, mean)
    np.testing.assert_array_equal(read_vector(path), mean)
    np.testing.assert_array_equal(kaldiio.load_mat(str(path)), mean)
    with pytest.raises(ValueError, match="1-D"):
        write_vector(path, matrix)
    with pytest.raises(ValueError, match="non-empty"):
        global_mean(np.zeros((0, 3)))


def test_compute_mean_files_and_command(tmp_path):
    keys, matrix = make_table(num=6, dim=4)
    scp = tmp_path / "xvector.scp"
    write_embeddings(tmp_path / "xvector.ark", scp, keys, matrix)
    utt2spk = tmp_path / "utt2spk"
    # spk0 owns utt0, utt2, utt4; spk1 owns utt1, utt3, utt5; utt9 has no embedding (skipped).
    utt2spk.write_text("".join(f"{key} {key.split('-')[0]}\n" for key in keys + ["spk1-utt9"]))
    code = compute_mean_bin.main(["--scp", str(scp), "--out", str(tmp_path / "mean.vec"),
                                  "--utt2spk", str(utt2spk), "--spk-out-dir", str(tmp_path / "spk")])
    assert code == 0
    np.testing.assert_allclose(read_vector(tmp_path / "mean.vec"), matrix.mean(axis=0), rtol=1e-6)
    speakers, means = load_embeddings(tmp_path / "spk" / "spk_xvector.scp")
    assert speakers == ["spk0", "spk1"]
    np.testing.assert_allclose(means, [matrix[0::2].mean(axis=0), matrix[1::2].mean(axis=0)], rtol=1e-6)
    assert (tmp_path / "spk" / "dropped.tsv").read_text() == "spk1-utt9\tno_embedding\n"

    with pytest.raises(ValueError, match="nothing to do"):
        compute_mean_files(scp)
    assert compute_mean_bin.main(["--scp", str(tmp_path / "nope.scp"), "--out", str(tmp_path / "m.vec")]) == 1
    assert not (tmp_path / "m.vec").exists()


def test_single_archive_fast_path_equals_kaldiio(tmp_path):
    from speakernet.backend.embeddings import _load_float_vectors
    from speakernet.data.kaldi_dir import read_scp

    keys, matrix = make_table(num=6, dim=5)
    ark, scp = tmp_path / "xvector.ark", tmp_path / "xvector.scp"
    write_embeddings(ark, scp, keys, matrix)
    shuffled = tmp_path / "shuffled.scp"
    lines = scp.read_text().splitlines()
    shuffled.write_text("\n".join(lines[::-1]) + "\n")  # offsets out of order: still one read of the archive
    assert _load_float_vectors(shuffled, read_scp(shuffled)) is not None
    loaded_keys, loaded = load_embeddings(shuffled)
    reference = kaldiio.load_scp(str(shuffled))
    assert loaded_keys == keys[::-1]
    np.testing.assert_array_equal(loaded, np.stack([reference[key] for key in loaded_keys]))
    # Doubles and several archives take kaldiio's path and give the same values.
    kaldiio.save_ark(str(tmp_path / "d.ark"), {k: matrix[i].astype(np.float64) for i, k in enumerate(keys)},
                     scp=str(tmp_path / "d.scp"))
    assert _load_float_vectors(tmp_path / "d.scp", read_scp(tmp_path / "d.scp")) is None
    np.testing.assert_array_equal(load_embeddings(tmp_path / "d.scp")[1], matrix)
    # A truncated archive is an error naming the scp and the first unreadable key.
    ark.write_bytes(ark.read_bytes()[:-3])
    with pytest.raises(DataDirError, match=r"xvector\.scp.*key 'spk1-utt5'.*cannot read"):
        load_embeddings(scp)


def test_a_stop_between_the_archive_and_the_index_leaves_no_stale_index(tmp_path, monkeypatch):
    import os

    keys, matrix = make_table()
    ark, scp = tmp_path / "xvector.ark", tmp_path / "xvector.scp"
    write_embeddings(ark, scp, keys, matrix)
    real_replace = os.replace

    def stop_before_the_scp(source, target):
        if str(target) == str(scp):
            raise KeyboardInterrupt  # a kill after the new archive is in place
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", stop_before_the_scp)
    with pytest.raises(KeyboardInterrupt):
        write_embeddings(ark, scp, keys[::-1], matrix[::-1] * 2)  # other rows at the old offsets
    # the old scp would silently give the new archive's rows under the old keys
    assert ark.is_file() and not scp.exists()
