"""Dataset validation, metadata check, waveform cache and splits."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from audiosweep import data
from audiosweep.config import merge
from audiosweep.data import DatasetError, prepare_data, read_metadata, split, split_test, validate_clips
from audiosweep.synthetic import class_clip, make_synthetic_csv
from tests.conftest import fill


@pytest.fixture
def small_tree(tmp_path, synth_root):
    """A copy of 20 synthetic clips (2 classes x 2 folds x ...) with the official metadata."""
    root = tmp_path / "ESC-50"
    shutil.copytree(synth_root / "meta", root / "meta")
    (root / "audio").mkdir()
    names = sorted(p.name for p in (synth_root / "audio").iterdir())[:20]
    for n in names:
        shutil.copy(synth_root / "audio" / n, root / "audio" / n)
    return root, names


def listed(root, names):
    meta = read_metadata(root)
    return meta[meta.filename.isin(names)].reset_index(drop=True)


def test_valid_clips_pass(small_tree):
    root, names = small_tree
    assert len(validate_clips(root, listed(root, names), allow_missing=False)) == 20


@pytest.mark.parametrize("damage, why", [
    (lambda p: p.unlink(), "missing"),
    (lambda p: p.write_bytes(b"RIFF....WAVEfmt garbage"), "unreadable"),
    (lambda p: sf.write(p, np.zeros(44100, np.float32), 44100), "wrong length"),
    (lambda p: sf.write(p, np.zeros((220500, 2), np.float32), 44100), "not mono"),
    (lambda p: sf.write(p, np.zeros(220500, np.float32), 22050), "wrong sample rate"),
])
def test_bad_clip_named_with_counts(small_tree, damage, why):
    root, names = small_tree
    damage(root / "audio" / names[3])
    meta = listed(root, names)
    with pytest.raises(DatasetError) as e:
        validate_clips(root, meta, allow_missing=False)
    msg = str(e.value)
    assert f"1 of 20 listed clips unusable: 1 {why}" in msg and names[3] in msg and "--allow_missing" in msg
    with pytest.warns(UserWarning, match=why):
        kept = validate_clips(root, meta, allow_missing=True)
    assert len(kept) == 19 and names[3] not in set(kept.filename)


def test_incomplete_dataset_fails_with_counts(synth_root, cache_dir):
    cfg = merge([{"data_dir": str(synth_root), "cache_dir": str(cache_dir)}])
    with pytest.raises(DatasetError, match=r"1800 of 2000 listed clips unusable: 1800 missing \(first: "):
        prepare_data(cfg)


def test_metadata_checked_against_official_folds(small_tree):
    root, _ = small_tree
    meta = pd.read_csv(root / "meta" / "esc50.csv")
    meta.loc[5, "fold"] = 1 + meta.loc[5, "fold"] % 5
    meta.to_csv(root / "meta" / "esc50.csv", index=False)
    with pytest.raises(DatasetError, match="1 rows disagree with the official fold assignment"):
        read_metadata(root)
    meta.drop(columns=["src_file"]).to_csv(root / "meta" / "esc50.csv", index=False)
    with pytest.raises(DatasetError, match="src_file"):
        read_metadata(root)


def test_listing_gets_the_configs_metadata_split_and_fold(tmp_path):
    meta = make_synthetic_csv(tmp_path / "mine", n_classes=2, per_class=6)
    cfg = {"dataset": "csv", "metadata": str(meta), "cache_dir": str(tmp_path / "c"), "sample_rate": 8000,
           "f_max": 4000, "fold": 4}
    with pytest.raises(DatasetError, match=r"fold 4 is not one of its folds \[1, 2, 3\]"):
        prepare_data(merge([cfg]))
    with pytest.warns(UserWarning, match="resampled"):  # the clips have several rates
        assert len(prepare_data(merge([cfg, {"split": "stratified", "valid_pct": 0.5}])).meta) == 12


def test_cache_decodes_once_and_is_keyed_by_rate(synth_root, tmp_path, monkeypatch):
    cfg = merge([{"data_dir": str(synth_root), "cache_dir": str(tmp_path), "allow_missing": True,
                  "esc10": True, "sample_rate": 8000, "f_max": 4000}])
    with pytest.warns(UserWarning):
        first = prepare_data(cfg)
    assert first.waveforms.shape == (200, 40000) and first.waveforms.dtype == torch.float16
    assert len(list(tmp_path.glob("esc10-5s-zeros-*-8000hz.pt"))) == 1  # dataset, clip length, padding, rate
    assert not list(synth_root.rglob("*.pt"))  # nothing written into data_dir

    def no_decode(path):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(data, "decode", no_decode)
    with pytest.warns(UserWarning):
        again = prepare_data(cfg)
    assert torch.equal(first.waveforms, again.waveforms)
    with pytest.raises(AssertionError, match="decoded again"), pytest.warns(UserWarning):
        prepare_data(merge([cfg.to_dict(), {"sample_rate": 16000, "f_max": 8000}]))


def test_resampling_keeps_the_tone(tmp_path):
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "a.wav", class_clip(5, np.random.default_rng(0)), 44100, subtype="FLOAT")
    meta = pd.DataFrame({"filename": ["a.wav"]})
    out = data.load_waveforms(tmp_path, meta, 16000, tmp_path / "cache", "fp", num_workers=1)
    assert out.shape == (1, 80000)
    spec = np.abs(np.fft.rfft(out[0].float().numpy()))
    peak_hz = np.argmax(spec) * 16000 / 80000
    assert abs(peak_hz - 100 * 2 ** (5 / 12)) < 2


def test_official_split_validates_on_fold():
    meta = data.official_metadata()
    tr, va = split(meta, merge([{"fold": 3}]))
    assert len(va) == 400 and set(meta.fold.iloc[va]) == {3} and 3 not in set(meta.fold.iloc[tr])


def test_stratified_split_groups_by_source_and_is_seeded():
    meta = data.official_metadata()
    tr, va = split(meta, merge([{"split": "stratified", "valid_pct": 0.2, "trial_num": 1}]))
    assert not set(meta.src_file.iloc[tr]) & set(meta.src_file.iloc[va])
    per_class = meta.iloc[va].groupby("target").size()
    assert len(per_class) == 50 and per_class.between(5, 13).all()
    assert 0.17 < len(va) / len(meta) < 0.23
    tr2, va2 = split(meta, merge([{"split": "stratified", "trial_num": 1}]))
    tr3, va3 = split(meta, merge([{"split": "stratified", "trial_num": 2}]))
    assert np.array_equal(va, va2) and not np.array_equal(va, va3)


@pytest.mark.parametrize("test_fold, valid_fold", [(3, 4), (5, 1)])
def test_the_test_fold_is_held_out_of_training_and_validation(test_fold, valid_fold):
    meta = data.official_metadata()
    cfg = merge([{"test_fold": test_fold}])  # fold left out: the fold after test_fold, cyclically
    tr, va, te = split_test(meta, cfg)
    assert cfg.effective_dict()["fold"] == valid_fold
    assert len(te) == 400 and set(meta.fold.iloc[te]) == {test_fold}
    assert set(meta.fold.iloc[va]) == {valid_fold} and len(va) == 400
    assert len(tr) == 1200 and test_fold not in set(meta.fold.iloc[tr]) and valid_fold not in set(meta.fold.iloc[tr])
    assert np.array_equal(split(meta, cfg)[0], tr) and np.array_equal(split(meta, cfg)[1], va)
    tr2, va2, te2 = split_test(meta, merge([{"test_fold": test_fold, "fold": 2 if test_fold != 2 else 3}]))
    assert set(meta.fold.iloc[va2]) == {2} and np.array_equal(te2, te) and not set(tr2) & set(te2)


def test_a_split_without_a_test_set_is_todays():
    meta = data.official_metadata()
    for cfg in ({"fold": 2}, {"split": "stratified", "trial_num": 3}):
        tr, va, te = split_test(meta, merge([cfg]))
        assert len(te) == 0 and len(tr) + len(va) == len(meta)
    rng = np.random.default_rng(3)  # as split() drew its validation set before test_pct existed
    assert np.array_equal(va, np.flatnonzero(data._grouped_stratified(meta, 0.2, rng, "src_file")))


def test_the_stratified_test_share_is_exact_per_class_and_the_same_for_every_trial():
    meta = data.official_metadata().assign(src_file=lambda m: m.filename)  # one clip per recording: exact quotas
    tests = []
    for trial in (1, 2, 7):
        cfg = merge([{"split": "stratified", "test_pct": 0.2, "valid_pct": 0.25, "trial_num": trial}])
        tr, va, te = split_test(meta, cfg)
        assert (meta.iloc[te].groupby("target").size() == 8).all() and meta.iloc[te].target.nunique() == 50
        assert (meta.iloc[va].groupby("target").size() == 8).all()  # a quarter of the 32 clips left per class
        assert not (set(tr) & set(va) or set(tr) & set(te) or set(va) & set(te)) and len(tr) + len(va) + len(te) == 2000
        tests.append(te)
        vals = va
    assert all(np.array_equal(t, tests[0]) for t in tests)  # test membership does not depend on trial_num
    assert not np.array_equal(vals, split_test(meta, merge([{"split": "stratified", "test_pct": 0.2,
                                                              "valid_pct": 0.25, "trial_num": 1}]))[1])


def test_the_stratified_test_share_keeps_recordings_whole():
    meta = data.official_metadata()
    tr, va, te = split_test(meta, merge([{"split": "stratified", "test_pct": 0.2, "trial_num": 1}]))
    sources = [set(meta.src_file.iloc[i]) for i in (tr, va, te)]
    assert not (sources[0] & sources[2] or sources[1] & sources[2] or sources[0] & sources[1])
    assert 0.17 < len(te) / len(meta) < 0.23


def test_a_test_fold_without_clips_is_explained():
    meta = data.official_metadata().query("fold != 5").reset_index(drop=True)
    with pytest.raises(DatasetError, match="test_fold=5 holds out none of the 1600 usable clips"):
        split(meta, merge([{"test_fold": 5}]))


def test_empty_split_is_explained(small_tree):
    root, names = small_tree
    meta = listed(root, names)
    missing_fold = ({1, 2, 3, 4, 5} - set(meta.fold)).pop()
    with pytest.raises(DatasetError, match="0 validation clips"):
        split(meta, merge([{"fold": missing_fold}]))


# --- faults: clips, metadata and the cache ------------------------------------------------------------------------


def small_cfg(root, cache, **extra):
    return merge([{"data_dir": str(root), "cache_dir": str(cache), "allow_missing": True, "sample_rate": 8000,
                   "f_max": 4000, "split": "stratified", **extra}])


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_clip_with_a_non_finite_sample_is_a_clip_problem(small_tree, tmp_path, value):
    root, names = small_tree
    wav = class_clip(0, np.random.default_rng(0))
    wav[1000] = value
    sf.write(root / "audio" / names[2], wav, 44100, subtype="FLOAT")
    meta = listed(root, names)
    decoded = data.decode_clips(root, meta, 8000, tmp_path / "c", data.fingerprint(root, meta), num_workers=1)
    assert decoded.nonfinite == [2] and torch.isfinite(decoded.waveforms).all()  # the cache stays finite
    problems = ["non-finite samples" if i == 2 else None for i in range(len(meta))]
    with pytest.raises(DatasetError, match=rf"1 non-finite samples \(first: {names[2]}\)"):
        data.usable(root, meta, problems, allow_missing=False)
    with pytest.warns(UserWarning) as caught:
        kept = prepare_data(small_cfg(root, tmp_path / "c"))
    assert any("1 non-finite samples (NaN or infinity)" in str(w.message) for w in caught)
    assert len(kept.meta) == 19 and names[2] not in set(kept.meta.filename)
    assert torch.isfinite(kept.waveforms).all() and len(kept.waveforms) == 19


def test_a_clip_replaced_by_one_of_the_same_size_is_decoded_again(small_tree, tmp_path):
    root, names = small_tree
    with pytest.warns(UserWarning):
        before = prepare_data(small_cfg(root, tmp_path / "c"))
    row = int(np.flatnonzero(before.meta.filename == names[0])[0])
    path = root / "audio" / names[0]
    size = path.stat().st_size
    sf.write(path, class_clip(7, np.random.default_rng(1)), 44100, subtype="PCM_16")
    assert path.stat().st_size == size
    with pytest.warns(UserWarning):
        after = prepare_data(small_cfg(root, tmp_path / "c"))
    assert after.fingerprint != before.fingerprint
    assert not torch.equal(after.waveforms[row], before.waveforms[row])


def overwrite(path, at: float, data: bytes) -> None:
    """Overwrite ``data`` inside ``path`` at the fraction ``at`` of its length: its size stays."""
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(int(size * at))
        f.write(data)
    assert path.stat().st_size == size


@pytest.mark.parametrize("corrupt, problem", [
    (lambda p: p.write_bytes(p.read_bytes()[:1000]), "unreadable"),  # truncated
    (lambda p: p.write_bytes(b""), "unreadable"),
    (lambda p: torch.save(torch.zeros(3, 5), p), "not a waveform cache"),
    (lambda p: torch.save({"waveforms": torch.zeros(20, 7, dtype=torch.float16), "nonfinite": []}, p), "expected"),
    (lambda p: torch.save({"waveforms": torch.full((20, 40000), float("nan"), dtype=torch.float16),
                           "nonfinite": []}, p), "no checksum"),  # as an older version wrote it
    (lambda p: overwrite(p, 0.6, bytes(range(256)) * 4), "does not match its checksum"),  # size kept
    (lambda p: overwrite(p, 0.9, b"\x00\x3c"), "does not match its checksum"),  # one sample made 1.0
])
def test_a_bad_cache_is_named_and_rebuilt(small_tree, tmp_path, corrupt, problem):
    root, names = small_tree
    meta = listed(root, names)
    fp = data.fingerprint(root, meta)
    good = data.load_waveforms(root, meta, 8000, tmp_path, fp, num_workers=1)
    (cache,) = tmp_path.glob("esc50-*.pt")
    corrupt(cache)
    with pytest.warns(UserWarning, match=rf"waveform cache {cache} .*{problem}.*decoding the clips again"):
        again = data.load_waveforms(root, meta, 8000, tmp_path, fp, num_workers=1)
    assert torch.equal(good, again)
    assert data.read_cache(cache, 20, 40000) is not None  # rewritten whole


def test_an_unwritable_cache_is_skipped_and_stale_temp_files_go(small_tree, tmp_path, small_disk):
    root, names = small_tree
    meta = listed(root, names)
    fill(small_disk)
    with pytest.warns(UserWarning, match=f"cannot write the waveform cache {small_disk}/.*going on without it"):
        data.load_waveforms(root, meta, 8000, small_disk, data.fingerprint(root, meta), num_workers=1)
    assert not [p for p in small_disk.iterdir() if p.name.startswith(".")]  # no temporary file left
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    with pytest.warns(UserWarning, match=f"cannot write the waveform cache {blocked}/.*going on without it"):
        wavs = data.load_waveforms(root, meta, 8000, blocked, data.fingerprint(root, meta), num_workers=1)
    assert wavs.shape == (20, 40000)
    cache = tmp_path / "cache"
    cache.mkdir()
    dead = cache / ".esc50-x-8000hz.pt.999999999.tmp"  # left by a killed run: no such pid
    mine = cache / f".esc50-y-8000hz.pt.{os.getpid()}.tmp"  # still being written
    dead_now = cache / ".esc50-x-8000hz.pt.999999999.k2_9zq01.tmp"  # the names of today's writers (mkstemp's)
    mine_now = cache / f".esc50-y-8000hz.pt.{os.getpid()}.12345678.tmp"
    for f in (dead, mine, dead_now, mine_now):
        f.write_bytes(b"x")
    data.load_waveforms(root, meta, 8000, cache, data.fingerprint(root, meta), num_workers=1)
    assert not dead.exists() and mine.exists() and not dead_now.exists() and mine_now.exists()
    assert not [p for p in cache.iterdir() if p.name.startswith(".") and p not in (mine, mine_now)]


def test_duplicated_metadata_rows_and_odd_clip_paths_are_named(small_tree, tmp_path):
    root, names = small_tree
    meta = pd.read_csv(root / "meta" / "esc50.csv")
    meta.iloc[7] = meta.iloc[3]
    meta.to_csv(root / "meta" / "esc50.csv", index=False)
    with pytest.raises(DatasetError, match="1 clip\\(s\\) listed more than once"):
        read_metadata(root)
    (root / "audio" / names[0]).unlink()
    (root / "audio" / names[0]).mkdir()
    (root / "audio" / names[1]).unlink()
    (root / "audio" / names[1]).symlink_to(root / "audio" / names[1])  # a loop
    assert data.clip_problem(root / "audio" / names[0]) == "a folder, not a file"
    assert data.clip_problem(root / "audio" / names[1]) == "a broken or looping link"


def test_links_planted_in_a_shared_cache_folder_are_never_written_through(small_tree, tmp_path):
    root, names = small_tree
    meta = listed(root, names)
    fp = data.fingerprint(root, meta)
    decoy = tmp_path / "decoy"
    decoy.write_bytes(b"precious")
    cache_dir = tmp_path / "shared-cache"
    cache_dir.mkdir()
    name = f"esc50-5s-zeros-{fp}-8000hz.pt"
    for pid in range(os.getpid() - 3, os.getpid() + 4):  # the pid-based temporary names of earlier versions
        (cache_dir / f".{name}.{pid}.tmp").symlink_to(decoy)
    (cache_dir / name).symlink_to(tmp_path / "nowhere")  # a dangling link at the cache's own name
    wavs = data.load_waveforms(root, meta, 8000, cache_dir, fp, num_workers=1)
    assert decoy.read_bytes() == b"precious"
    assert not (cache_dir / name).is_symlink() and torch.equal(data.read_cache(cache_dir / name, 20, 40000).waveforms,
                                                               wavs)
    assert not (tmp_path / "nowhere").exists()


def test_fingerprint_content_catches_a_clip_replaced_with_its_size_and_time_restored(small_tree, tmp_path):
    root, names = small_tree
    with pytest.warns(UserWarning):
        before = prepare_data(small_cfg(root, tmp_path / "c", fingerprint="content"))
    path = root / "audio" / names[5]
    st = path.stat()
    sf.write(path, class_clip(9, np.random.default_rng(3)), 44100, subtype="PCM_16")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    meta = before.meta
    assert data.fingerprint(root, meta) == data.fingerprint(root, meta)  # stat: the replacement goes unseen
    with pytest.warns(UserWarning):
        after = prepare_data(small_cfg(root, tmp_path / "c", fingerprint="content"))
    row = int(np.flatnonzero(after.meta.filename == names[5])[0])
    assert after.fingerprint != before.fingerprint
    assert not torch.equal(after.waveforms[row], before.waveforms[row])


def corrupt_body(path) -> None:
    """Rewrite ``path`` as a FLAC stream (under its .wav name) whose header is intact and whose frames are not."""
    wav, rate = sf.read(path, dtype="float32")
    sf.write(path, wav, rate, format="FLAC", subtype="PCM_16")
    body = bytearray(path.read_bytes())
    body[len(body) // 2:len(body) // 2 + 3000] = bytes(3000)
    path.write_bytes(bytes(body))


def test_a_clip_whose_body_fails_to_decode_is_dropped_by_allow_missing(small_tree, tmp_path):
    root, names = small_tree
    corrupt_body(root / "audio" / names[6])
    assert data.clip_problem(root / "audio" / names[6]) is None  # the header is fine
    with pytest.warns(UserWarning) as caught:
        kept = prepare_data(small_cfg(root, tmp_path / "c"))
    assert any(f"1 undecodable past the header (first: {names[6]})" in str(w.message) for w in caught)
    assert len(kept.meta) == 19 and names[6] not in set(kept.meta.filename) and len(kept.waveforms) == 19
    meta = listed(root, names)
    row = int(np.flatnonzero(meta.filename == names[6])[0])
    for _ in range(2):  # decoded, then read from the cache: the clip stays listed
        decoded = data.decode_clips(root, meta, 8000, tmp_path / "d", data.fingerprint(root, meta), num_workers=1)
        assert decoded.undecodable == [row] and not decoded.waveforms[row].any()


def test_nonfinite_rows_finds_every_row_with_a_nan_or_an_infinity_in_any_chunk():
    from audiosweep.data import nonfinite_rows

    wavs = torch.randn(700, 50).half()
    assert nonfinite_rows(wavs) == []
    for row, col, value in ((0, 0, float("nan")), (255, 49, float("inf")), (256, 3, -float("inf")),
                            (511, 7, float("nan")), (699, 49, float("inf")), (699, 2, float("nan"))):
        wavs[row, col] = value
    assert nonfinite_rows(wavs) == [0, 255, 256, 511, 699]
    assert nonfinite_rows(wavs, chunk=1) == [0, 255, 256, 511, 699]
    assert nonfinite_rows(torch.full((3, 4), float("nan"), dtype=torch.float16)) == [0, 1, 2]
