"""The dataset registry, the user's own clips (folder, csv), variable clips, and their clear errors."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
import zipfile

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

import train
from audiosweep import data
from audiosweep.config import effective, merge
from audiosweep.data import ClipSpec, DatasetError, prepare_data
from audiosweep.datasets import DATASETS, dcase2017, gtzan, urbansound8k
from audiosweep.download import DownloadError, archive_name, incomplete
from audiosweep.errors import ConfigError
from audiosweep.results import config_id
from audiosweep.synthetic import (
    class_clip,
    make_synthetic_csv,
    make_synthetic_dcase2017,
    make_synthetic_folder,
    make_synthetic_gtzan,
    make_synthetic_urbansound8k,
)
from tests.conftest import REPO, TINY, read_records
from tests.test_download import Server


@pytest.fixture(scope="session")
def folder_root(tmp_path_factory):
    """4 classes x 24 clips: 22.05 and 44.1 kHz, a third stereo, 3 to 6.5 s, wav and flac."""
    return make_synthetic_folder(tmp_path_factory.mktemp("folder") / "clips", per_class=24)


@pytest.fixture(scope="session")
def csv_meta(tmp_path_factory):
    """The same kind of clips listed in metadata.csv with folds 1..3 and groups of two clips."""
    return make_synthetic_csv(tmp_path_factory.mktemp("csv") / "mine", per_class=24)


@pytest.fixture(scope="session")
def us8k_root(tmp_path_factory):
    """3 classes x 2 folds x 4 clips (two per fsID): 22.05 and 44.1 kHz, a third stereo, 3 to 6.5 s."""
    return make_synthetic_urbansound8k(tmp_path_factory.mktemp("us8k") / "UrbanSound8K")


@pytest.fixture(scope="session")
def gtzan_root(tmp_path_factory):
    """3 genres x 8 clips of 3 to 6.5 s."""
    return make_synthetic_gtzan(tmp_path_factory.mktemp("gtzan") / "GTZAN")


@pytest.fixture(scope="session")
def dcase_root(tmp_path_factory):
    """3 scenes x 4 folds x 2 clips (one location per scene and fold): 2 s at 44.1 kHz, 24-bit, half stereo."""
    return make_synthetic_dcase2017(tmp_path_factory.mktemp("dcase") / "DCASE2017-scenes", seconds=2.0)


@pytest.fixture
def small_folder(tmp_path):
    return make_synthetic_folder(tmp_path / "clips", n_classes=2, per_class=8)


def cfg_of(root, cache, **extra):
    return merge([{"data_dir": str(root), "cache_dir": str(cache), "sample_rate": 16000, "f_max": 8000,
                   "split": "stratified", "num_workers": 1, **extra}])


# --- the registry and the config --------------------------------------------------------------------------------


def test_registry_lists_each_dataset_with_its_folds_length_and_format():
    assert list(DATASETS) == ["esc50", "esc10", "folder", "csv", "urbansound8k", "gtzan", "dcase2017_scenes"]
    esc50, folder, table = DATASETS["esc50"], DATASETS["folder"], DATASETS["csv"]
    assert (esc50.n_folds, esc50.default_seconds, esc50.strict, esc50.download_marker) == (5, 5.0, True,
                                                                                           "meta/esc50.csv")
    assert (folder.n_folds, folder.strict, folder.download_marker) == (None, False, None)
    assert table.folds_in_metadata and not table.strict and table.default_seconds == 5.0
    us8k, gt = DATASETS["urbansound8k"], DATASETS["gtzan"]
    assert (us8k.n_folds, us8k.default_seconds, us8k.strict, us8k.download_marker, us8k.download_url) == (
        10, 4.0, False, "metadata/UrbanSound8K.csv", "https://zenodo.org/records/1203745/files/UrbanSound8K.tar.gz")
    assert (gt.n_folds, gt.default_seconds, gt.strict, gt.download_marker) == (10, 30.0, False, "genres/")
    assert (esc50.default_dir, us8k.default_dir, gt.default_dir, folder.default_dir) == (
        "data/ESC-50", "data/UrbanSound8K", "data/GTZAN", None)
    assert merge([{"dataset": "urbansound8k"}]).data_root == "data/UrbanSound8K"
    assert merge([{"dataset": "gtzan", "data_dir": "/x"}]).data_root == "/x"
    assert gt.download_url.endswith("/marsyas/gtzan/resolve/main/data/genres.tar.gz")
    assert merge([{"dataset": "urbansound8k", "fold": 10}]).clip_length == 4.0
    assert merge([{"dataset": "gtzan", "split": "stratified"}]).clip_length == 30.0
    dc = DATASETS["dcase2017_scenes"]
    assert (dc.n_folds, dc.default_seconds, dc.strict, dc.audio_dir, dc.download_marker, dc.download_url) == (
        4, 10.0, False, "", "evaluation_setup/fold4_evaluate.txt", None)
    assert dc.download_urls[0] == "https://zenodo.org/records/400515/files/TUT-acoustic-scenes-2017-development.meta.zip"
    assert [u.rsplit(".", 2)[-2] for u in dc.download_urls[1:]] == [str(i) for i in range(1, 11)]
    assert merge([{"dataset": "dcase2017_scenes", "fold": 4}]).data_root == "data/DCASE2017-scenes"
    assert merge([{"dataset": "dcase2017_scenes"}]).clip_length == 10.0


def test_config_reads_the_registry_without_torch():
    code = ("import sys; from audiosweep.config import merge; "
            "merge([{'dataset': 'folder', 'data_dir': 'x', 'split': 'stratified', 'clip_seconds': 2}]); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_esc10_flag_and_old_records_keep_their_identity():
    old_esc10 = {k: v for k, v in merge([{"esc10": True}]).to_dict().items()
                 if k not in ("metadata", "clip_seconds", "pad_mode")}  # a record written before these knobs
    assert config_id(old_esc10) == config_id(merge([{"dataset": "esc10"}]).to_dict()) \
        == config_id(merge([{"esc10": True, "clip_seconds": 5}]).to_dict())
    assert effective(old_esc10)["dataset"] == "esc10" and effective(old_esc10)["clip_seconds"] == 5.0
    old_esc50 = {k: v for k, v in merge([{}]).to_dict().items() if k not in ("metadata", "clip_seconds", "pad_mode")}
    assert config_id(old_esc50) == config_id(merge([{}]).to_dict()) != config_id(old_esc10)
    assert config_id(merge([{"clip_seconds": 4}]).to_dict()) != config_id(old_esc50)
    assert config_id(merge([{"pad_mode": "repeat"}]).to_dict()) != config_id(old_esc50)


@pytest.mark.parametrize("layer, words", [
    ({"fold": 6}, ["fold", "esc50", "1..5"]),
    ({"dataset": "esc10", "fold": 7}, ["fold", "esc10", "1..5"]),
    ({"dataset": "folder"}, ["split", "folder", "--split stratified"]),
    ({"dataset": "csv"}, ["metadata", "--metadata"]),
    ({"dataset": "urbansound8k", "fold": 11}, ["fold", "urbansound8k", "1..10"]),
    ({"dataset": "gtzan", "fold": 11}, ["fold", "gtzan", "1..10"]),
    ({"dataset": "dcase2017_scenes", "fold": 5}, ["fold", "dcase2017_scenes", "1..4"]),
    ({"dataset": "dcase2017_scenes", "download_url": "https://mirror/files/x.audio.1.zip"},
     ["download_url", "11 archives", "folder URL", "https://zenodo.org/records/400515/files/"]),
    ({"dataset": "folder", "split": "stratified"}, ["data_dir", "folder", "--data_dir"]),
    ({"metadata": "m.csv"}, ["metadata", "only read by dataset csv"]),
    ({"dataset": "folder", "split": "stratified", "esc10": True}, ["esc10", "folder"]),
    ({"clip_seconds": 0}, ["clip_seconds", "> 0"]),
    ({"pad_mode": "reflect"}, ["pad_mode", "zeros", "repeat"]),
])
def test_dataset_keys_that_contradict_the_dataset_are_named(layer, words):
    with pytest.raises(ConfigError) as e:
        merge([layer])
    assert all(w in str(e.value) for w in words), str(e.value)


def test_clip_samples_follows_the_configured_length():
    assert data.clip_samples(merge([{"sample_rate": 16000, "f_max": 8000}])) == 80000
    assert data.clip_samples(merge([{"sample_rate": 16000, "f_max": 8000, "clip_seconds": 0.1}])) == 1600


# --- listing the user's clips -----------------------------------------------------------------------------------


def test_folder_lists_classes_in_sorted_folder_order(small_folder):
    (small_folder / "class_1" / "notes.txt").write_text("not audio")
    meta = DATASETS["folder"].list_clips(small_folder)
    assert len(meta) == 16 and sorted(meta.label.unique()) == ["class_0", "class_1"]
    assert (meta.target == meta.label.map({"class_0": 0, "class_1": 1})).all()
    assert (meta.group == meta.filename).all() and meta.fold.isna().all()
    assert set(meta.filename.str.rsplit(".", n=1).str[1]) == {"wav", "flac"}


def test_folder_errors_name_the_class(small_folder):
    (small_folder / "empty_class").mkdir()
    with pytest.raises(DatasetError, match=r"1 class folder\(s\) without audio files .*empty_class"):
        DATASETS["folder"].list_clips(small_folder)
    (small_folder / "empty_class").rmdir()
    (small_folder / "lonely").mkdir()
    shutil.copy(small_folder / "class_0" / "clip_0.wav", small_folder / "lonely" / "only.wav")
    with pytest.raises(DatasetError, match=r"1 class\(es\) with a single clip \(first: \['lonely'\]\).*both training"):
        DATASETS["folder"].list_clips(small_folder)


@pytest.mark.slow
def test_csv_lists_labels_folds_and_groups(csv_meta):
    meta = DATASETS["csv"].list_clips(csv_meta.parent, metadata=str(csv_meta), split="official", fold=3)
    assert len(meta) == 96 and set(meta.fold) == {1, 2, 3} and meta.group.nunique() == 48
    assert meta.drop_duplicates("target").sort_values("target").label.tolist() == [f"sound {c}" for c in range(4)]


@pytest.mark.parametrize("edit, words", [
    (lambda t, p: p.unlink(), ["no such file", "metadata.csv"]),
    (lambda t, p: t.drop(columns=["label"]).to_csv(p, index=False), ["columns ['label'] missing", "file"]),
    (lambda t, p: t.assign(fold=t.fold.where(t.fold != 2, 1)).to_csv(p, index=False),
     ["fold 2 is not one of its folds [1, 3]"]),
    (lambda t, p: t.drop(columns=["fold"]).to_csv(p, index=False), ["no fold column", "--split stratified"]),
    (lambda t, p: t.assign(fold="x").to_csv(p, index=False), ["96 fold value(s) are not positive integers"]),
    (lambda t, p: t.assign(label=["odd one"] + list(t.label[1:])).to_csv(p, index=False),
     ["single clip", "odd one"]),
    (lambda t, p: pd.concat([t, t.iloc[:1]]).to_csv(p, index=False), ["1 file(s) listed more than once"]),
])
def test_csv_errors_are_one_clear_message(tmp_path, csv_meta, edit, words):
    path = tmp_path / "metadata.csv"
    shutil.copy(csv_meta, path)
    edit(pd.read_csv(path), path)
    with pytest.raises(DatasetError) as e:
        DATASETS["csv"].list_clips(csv_meta.parent, metadata=str(path), split="official", fold=2)
    assert all(w in str(e.value) for w in words), str(e.value)


@pytest.mark.parametrize("outside", ["../elsewhere/stolen.wav", "clips/../../elsewhere/stolen.wav", "ABS"])
def test_csv_paths_leaving_data_dir_are_refused_naming_the_row(tmp_path, csv_meta, monkeypatch, outside):
    """A listed file outside data_dir (``..``, an absolute path) is refused before any clip is read, even when it
    is a valid clip: the error names the line of the metadata and the value."""
    root = tmp_path / "mine"
    shutil.copytree(csv_meta.parent, root)
    stolen = tmp_path / "elsewhere" / "stolen.wav"
    stolen.parent.mkdir()
    shutil.copy(root / "clips" / "0-0.wav", stolen)
    outside = str(stolen) if outside == "ABS" else outside
    table = pd.read_csv(root / "metadata.csv")
    table.loc[5, "file"] = outside
    table.to_csv(root / "metadata.csv", index=False)
    monkeypatch.setattr(data, "header", lambda p: pytest.fail(f"{p} read before the metadata was checked"))
    with pytest.raises(DatasetError) as e:
        prepare_data(cfg_of(root, tmp_path / "c", dataset="csv", metadata="metadata.csv"))
    assert str(e.value) == (f"{root / 'metadata.csv'}, line 7: file {outside!r} is outside data_dir {root}; list "
                            "each clip by its path relative to data_dir, without '..'")
    table.loc[5, "file"] = "clips/extra/../0-5.flac"  # a '..' that stays inside data_dir: fine
    table.to_csv(root / "metadata.csv", index=False)
    assert len(DATASETS["csv"].list_clips(root, metadata="metadata.csv", split="official", fold=2)) == 96


# --- variable clips -----------------------------------------------------------------------------------------------


VARIABLE = ClipSpec("folder", "", strict=False, native_rate=None, seconds=1.0)


@pytest.mark.parametrize("wav, pad_mode, expected", [
    ([[1], [2], [3]], "zeros", [1, 2, 3, 0]),
    ([[1], [2], [3]], "repeat", [1, 2, 3, 1]),
    ([[1], [2], [3], [4], [5], [6]], "repeat", [1, 2, 3, 4]),  # cropped to its start
    ([[1, 3], [2, 4]], "zeros", [2, 3, 0, 0]),  # downmixed: the mean of the channels
])
def test_clips_are_downmixed_then_padded_or_cropped(wav, pad_mode, expected):
    spec = ClipSpec("folder", "", strict=False, native_rate=None, seconds=1.0, pad_mode=pad_mode)
    out = data.conform(np.array(wav, np.float32), 4, spec, "x.wav")  # 1 s at 4 Hz: 4 samples
    assert out.tolist() == expected


def test_other_rates_are_resampled_keeping_the_tone(tmp_path):
    sf.write(tmp_path / "a.wav", class_clip(5, np.random.default_rng(0), 22050 * 4, 22050)[:, None].repeat(2, 1),
             22050, subtype="FLOAT")
    out = data.load_waveforms(tmp_path, pd.DataFrame({"filename": ["a.wav"]}), 16000, tmp_path / "c", "fp", 1,
                              VARIABLE)
    assert out.shape == (1, 16000)
    spec = np.abs(np.fft.rfft(out[0].float().numpy()))
    assert abs(np.argmax(spec) * 16000 / 16000 - 100 * 2 ** (5 / 12)) < 2


@pytest.mark.slow
def test_variable_clips_are_reported_in_one_warning_with_counts(folder_root, tmp_path):
    with pytest.warns(UserWarning) as caught:
        got = prepare_data(cfg_of(folder_root, tmp_path, dataset="folder"))
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1, messages
    assert ("of 96 clips, 32 multichannel (downmixed to mono); 48 shorter than 5 s (padded: zeros); 24 longer than "
            "5 s (cropped to their first 5 s); sample rates 22050 Hz: 48, 44100 Hz: 48 (resampled to 16000 Hz)"
            ) in messages[0]
    assert got.waveforms.shape == (96, 80000) and torch.isfinite(got.waveforms).all()
    assert got.classes == ["class_0", "class_1", "class_2", "class_3"] and len(got.valid_idx) == 20  # 5 per class
    padded = got.meta.index[got.meta.filename == "class_0/clip_0.wav"][0]  # 3 s at 22050 Hz
    # silence after the clip, but for the resampling filter's few samples of ringing at its end
    assert got.waveforms[padded, 48100:].abs().max() == 0 and got.waveforms[padded, :48000].abs().max() > 0


def test_cache_is_keyed_by_dataset_length_and_padding(small_folder, tmp_path):
    with pytest.warns(UserWarning):
        zeros = prepare_data(cfg_of(small_folder, tmp_path, dataset="folder", clip_seconds=4))
        repeat = prepare_data(cfg_of(small_folder, tmp_path, dataset="folder", clip_seconds=4, pad_mode="repeat"))
    assert sorted(p.name.split("-")[:3] for p in tmp_path.glob("*.pt")) == [["folder", "4s", "repeat"],
                                                                             ["folder", "4s", "zeros"]]
    assert zeros.waveforms.shape == repeat.waveforms.shape == (16, 64000)
    short = zeros.meta.index[zeros.meta.filename == "class_0/clip_0.wav"][0]  # 3 s: 1 s of padding
    assert zeros.waveforms[short, 48100:].abs().max() == 0  # past the resampling filter's ringing
    again, start = repeat.waveforms[short, 48100:63900].float(), repeat.waveforms[short, 100:15900].float()
    assert torch.allclose(again, start, atol=2e-3) and start.abs().max() > 0.1


def test_unreadable_files_are_named_and_counted_or_dropped(small_folder, tmp_path):
    (small_folder / "class_1" / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    (small_folder / "class_1" / "silent.flac").write_bytes(b"")
    cfg = cfg_of(small_folder, tmp_path, dataset="folder")
    with pytest.raises(DatasetError) as e:
        prepare_data(cfg)
    msg = str(e.value)
    assert "2 of 18 listed clips unusable: 2 unreadable (first: class_1/broken.wav, class_1/silent.flac)" in msg
    assert "--allow_missing true" in msg
    with pytest.warns(UserWarning) as caught:
        kept = prepare_data(merge([cfg.to_dict(), {"allow_missing": True}]))
    assert any("using the 16 valid clips (allow_missing)" in str(w.message) for w in caught)
    assert len(kept.meta) == 16 and "class_1/broken.wav" not in set(kept.meta.filename)


def test_user_data_is_not_downloaded(tmp_path):
    cfg = cfg_of(tmp_path / "nowhere", tmp_path, dataset="folder")
    with pytest.raises(DatasetError, match="no such folder .*point --data_dir at them"):
        prepare_data(cfg)


# --- the public datasets: UrbanSound8K, GTZAN ---------------------------------------------------------------------


def test_urbansound8k_lists_labels_folds_and_groups(us8k_root):
    meta = DATASETS["urbansound8k"].list_clips(us8k_root)
    assert len(meta) == 24 and list(meta.filename[:2]) == ["fold1/0-0-0-0.wav", "fold1/0-0-0-1.wav"]
    assert meta.drop_duplicates("target").label.tolist() == ["air_conditioner", "car_horn", "children_playing"]
    assert meta.groupby("fold").size().to_dict() == {1: 12, 2: 12}
    assert meta.groupby("group").fold.nunique().eq(1).all() and meta.group.nunique() == 12  # fsID: one fold each
    assert all((us8k_root / "audio" / f).is_file() for f in meta.filename)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_urbansound8k_official_split_validates_on_the_fold(us8k_root, tmp_path):
    d = prepare_data(cfg_of(us8k_root, tmp_path, dataset="urbansound8k", split="official", fold=2))
    assert d.classes == ["air_conditioner", "car_horn", "children_playing"]
    assert set(d.meta.fold.iloc[d.valid_idx.numpy()]) == {2} and set(d.meta.fold.iloc[d.train_idx.numpy()]) == {1}
    assert len(d.valid_idx) == 12 and d.waveforms.shape == (24, 4 * 16000)


@pytest.mark.parametrize("edit, words", [
    (lambda m: m.drop(columns="fsID"), ["columns ['fsID'] missing"]),
    (lambda m: m.assign(fold=m.fold.where(m.index > 0, 11)), ["1 fold value(s) outside 1..10"]),
    (lambda m: m.assign(classID=m.classID.where(m.index > 0, 1)), ["classID and class disagree"]),
    (lambda m: m.assign(slice_file_name=m.slice_file_name.where(m.index != 2, "../../../x.wav")),
     ["UrbanSound8K.csv, line 4: slice_file_name '../../../x.wav' is outside data_dir"]),
])
def test_urbansound8k_metadata_errors_are_named(us8k_root, tmp_path, edit, words):
    root = tmp_path / "us8k"
    shutil.copytree(us8k_root / "metadata", root / "metadata")
    path = root / urbansound8k.META
    edit(pd.read_csv(path)).to_csv(path, index=False)
    with pytest.raises(DatasetError) as e:
        DATASETS["urbansound8k"].list_clips(root)
    assert all(w in str(e.value) for w in words), str(e.value)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_gtzan_lists_genres_with_ten_stratified_folds(gtzan_root, tmp_path):
    meta = DATASETS["gtzan"].list_clips(gtzan_root)
    assert meta.filename[0] == "blues/blues.00000.wav" and meta.group.is_unique
    # within each genre, file-name order deals the clips to folds 1..10 in turn: 8 clips -> folds 1..8
    assert meta[meta.label == "country"].sort_values("filename").fold.tolist() == list(range(1, 9))
    official = prepare_data(cfg_of(gtzan_root, tmp_path, dataset="gtzan", split="official", fold=3))
    assert official.meta.filename.iloc[official.valid_idx.numpy()].str.endswith(".00002.wav").all()
    assert len(official.valid_idx) == 3
    d = prepare_data(cfg_of(gtzan_root, tmp_path, dataset="gtzan", valid_pct=0.25))
    assert d.classes == ["blues", "classical", "country"] and d.waveforms.shape == (24, 30 * 16000)
    assert d.targets[d.valid_idx].bincount().tolist() == [2, 2, 2]


@pytest.mark.filterwarnings("ignore:.*downmixed to mono")
def test_gtzan_unreadable_file_is_dropped_with_allow_missing(gtzan_root, tmp_path):
    root = tmp_path / "GTZAN"
    shutil.copytree(gtzan_root, root)
    (root / "genres" / "blues" / "blues.00003.wav").write_bytes(b"not audio")  # as GTZAN's jazz.00054
    with pytest.raises(DatasetError, match="1 unreadable .first: blues/blues.00003.wav.*--allow_missing true"):
        prepare_data(cfg_of(root, tmp_path, dataset="gtzan"))
    with pytest.warns(UserWarning, match="using the 23 valid clips"):
        assert len(prepare_data(cfg_of(root, tmp_path, dataset="gtzan", allow_missing=True)).meta) == 23


def tar_gz(root, top: str | None) -> bytes:
    """``root``'s tree as a .tar.gz, under the folder ``top`` (or its own contents at the archive's top)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for p in sorted(root.iterdir()):
            t.add(p, f"{top}/{p.name}" if top else p.name)
    return buf.getvalue()


@pytest.mark.parametrize("dataset, top, marker", [
    ("urbansound8k", "UrbanSound8K", "metadata/UrbanSound8K.csv"),  # the official archive's top folder
    ("gtzan", None, "genres"),  # genres/ is the archive's top folder: data_dir holds it
])
def test_public_datasets_download_from_their_tar_gz(tmp_path, us8k_root, gtzan_root, dataset, top, marker):
    src = us8k_root if dataset == "urbansound8k" else gtzan_root
    srv = Server(tar_gz(src, top))
    try:
        cfg = cfg_of(tmp_path / "data" / dataset, tmp_path / "cache", dataset=dataset, download_url=srv.url)
        root = data.ensure_dataset(cfg)
        assert data.ensure_dataset(cfg) == root and len(srv.requests) == 1  # present: no second download
    finally:
        srv.close()
    assert (root / marker).exists() and sorted(p.name for p in (tmp_path / "data").iterdir()) == [
        f".{dataset}.download.lock", dataset]  # the lock that runs started together wait on
    listed = DATASETS[dataset].list_clips(root)
    pd.testing.assert_frame_equal(listed, DATASETS[dataset].list_clips(src))
    assert all((root / DATASETS[dataset].audio_dir / f).read_bytes() ==
               (src / DATASETS[dataset].audio_dir / f).read_bytes() for f in listed.filename)


@pytest.mark.parametrize("dataset, module", [("urbansound8k", urbansound8k), ("gtzan", gtzan)])
def test_the_official_archive_is_the_default_download(tmp_path, monkeypatch, dataset, module):
    calls = []
    monkeypatch.setattr(data, "published_checksums", lambda url: {"listed at": url})
    monkeypatch.setattr(data, "download_dataset", lambda *args, **kw: calls.append((args, kw)))
    data.ensure_dataset(cfg_of(tmp_path / dataset, tmp_path, dataset=dataset))
    entry = DATASETS[dataset]
    assert calls == [((module.URL, tmp_path / dataset), {"marker": entry.download_marker,
                                                         "checksums": {"listed at": entry.checksums_url}})]
    assert entry.checksums_url.startswith(("https://zenodo.org/api/records/", "https://huggingface.co/api/datasets/"))


# --- DCASE 2017 scenes: several archives ------------------------------------------------------------------------


def test_dcase2017_lists_scenes_folds_and_locations(dcase_root):
    meta = DATASETS["dcase2017_scenes"].list_clips(dcase_root)
    assert len(meta) == 24 and meta.filename[0] == "audio/a001_0_10.wav" and meta.group[0] == "a001"
    assert meta.drop_duplicates("target").sort_values("target").label.tolist() == ["beach", "bus", "cafe/restaurant"]
    assert meta.groupby("fold").size().to_dict() == {1: 6, 2: 6, 3: 6, 4: 6}
    assert meta.group.nunique() == 12 and meta.groupby("group").fold.nunique().eq(1).all()
    assert all((dcase_root / f).is_file() for f in meta.filename)


def test_dcase2017_official_split_is_the_folds_evaluate_list(dcase_root, tmp_path):
    with pytest.warns(UserWarning, match="of 24 clips, 12 multichannel .downmixed to mono.; 24 shorter than 10 s"):
        d = prepare_data(cfg_of(dcase_root, tmp_path, dataset="dcase2017_scenes", split="official", fold=2))
    listed = [line.split("\t")[0] for line in (dcase_root / "evaluation_setup/fold2_evaluate.txt").read_text()
              .splitlines()]
    assert d.meta.filename.iloc[d.valid_idx.numpy()].tolist() == listed and len(listed) == 6
    assert d.classes == ["beach", "bus", "cafe/restaurant"] and d.waveforms.shape == (24, 10 * 16000)


def _edit_setup(root, fold: int, edit) -> None:
    path = root / dcase2017.evaluate_list(fold)
    path.write_text(edit(path.read_text()))


@pytest.mark.parametrize("edit, words", [
    (lambda r: (r / "evaluation_setup/fold3_evaluate.txt").unlink(),
     ["fold3_evaluate.txt: no such file", "evaluation_setup/fold1..4_evaluate.txt", "audio/"]),
    (lambda r: _edit_setup(r, 2, lambda t: t.replace("\tbus\n", " bus\n", 1)),
     ["fold2_evaluate.txt, line 3", "expected 'audio/<file>.wav<TAB><scene label>'", "bus"]),
    (lambda r: _edit_setup(r, 4, lambda t: t + "audio/a001_0_10.wav\tbeach\n"),
     ["1 clip(s) listed more than once", "audio/a001_0_10.wav in folds [1, 4]", "partition"]),
])
def test_dcase2017_setup_errors_are_named(dcase_root, tmp_path, edit, words):
    shutil.copytree(dcase_root / "evaluation_setup", tmp_path / "evaluation_setup")
    edit(tmp_path)
    with pytest.raises(DatasetError) as e:
        DATASETS["dcase2017_scenes"].list_clips(tmp_path)
    assert all(w in str(e.value) for w in words), str(e.value)


def dcase_archives(root) -> dict[str, bytes]:
    """``root`` as the official archives at /files/: the metadata in the meta zip, the clips dealt over the ten
    audio zips, each under the folder TUT-acoustic-scenes-2017-development/."""
    names = [archive_name(u) for u in dcase2017.URLS]
    parts = [["meta.txt", *sorted(f"evaluation_setup/{p.name}" for p in (root / "evaluation_setup").iterdir())]]
    clips = sorted(f"audio/{p.name}" for p in (root / "audio").iterdir())
    parts += [clips[i::10] for i in range(10)]
    out = {}
    for name, files in zip(names, parts):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for f in files:
                z.write(root / f, f"TUT-acoustic-scenes-2017-development/{f}")
        out[f"/files/{name}"] = buf.getvalue()
    return out


def assert_same_dataset(root, src) -> None:
    listed = DATASETS["dcase2017_scenes"].list_clips(root)
    pd.testing.assert_frame_equal(listed, DATASETS["dcase2017_scenes"].list_clips(src))
    assert all((root / f).read_bytes() == (src / f).read_bytes() for f in listed.filename)
    assert (root / "meta.txt").read_bytes() == (src / "meta.txt").read_bytes() and not incomplete(root)


def test_dcase2017_downloads_its_archives_into_one_folder(tmp_path, dcase_root):
    srv = Server(dcase_archives(dcase_root))
    try:
        cfg = cfg_of(tmp_path / "data" / "scenes", tmp_path / "cache", dataset="dcase2017_scenes",
                     download_url=srv.base + "/files/")
        root = data.ensure_dataset(cfg)
        assert data.ensure_dataset(cfg) == root  # complete: no second download
    finally:
        srv.close()
    assert sorted(srv.paths) == sorted(dcase_archives(dcase_root)) and len(srv.paths) == 11
    assert_same_dataset(root, dcase_root)
    # no archive or temp folder left; the lock that runs started together wait on is kept
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [".scenes.download.lock", "scenes"]


def test_dcase2017_interrupted_download_is_finished_by_the_next_run(tmp_path, dcase_root):
    archives = dcase_archives(dcase_root)
    missing = "/files/TUT-acoustic-scenes-2017-development.audio.7.zip"
    srv = Server({k: v for k, v in archives.items() if k != missing})
    try:
        cfg = cfg_of(tmp_path / "scenes", tmp_path / "cache", dataset="dcase2017_scenes",
                     download_url=srv.base + "/files")
        with pytest.raises(DownloadError, match="audio.7.zip: HTTP 404"):
            data.ensure_dataset(cfg)
        root = tmp_path / "scenes"
        # the meta archive came first: its marker is there, yet the set is known to be incomplete
        assert (root / "evaluation_setup/fold4_evaluate.txt").is_file() and incomplete(root)
        first = len(srv.paths)
        srv.payload = archives
        assert data.ensure_dataset(cfg) == root
    finally:
        srv.close()
    assert srv.paths[first:] == [f"/files/TUT-acoustic-scenes-2017-development.audio.{i}.zip" for i in range(7, 11)]
    assert_same_dataset(root, dcase_root)


def test_dcase2017_default_download_is_the_official_archives(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(data, "published_checksums", lambda url: {"listed at": url})
    monkeypatch.setattr(data, "download_archives", lambda *args, **kw: calls.append((args, kw)))
    data.ensure_dataset(cfg_of(tmp_path / "scenes", tmp_path, dataset="dcase2017_scenes"))
    assert calls == [((list(dcase2017.URLS), tmp_path / "scenes"), {
        "marker": "evaluation_setup/fold4_evaluate.txt", "checksums": {"listed at": "https://zenodo.org/api/records/400515"}})]


# --- end to end ---------------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("dataset", ["folder", "csv"])
def test_train_runs_and_learns_on_the_users_clips(tmp_path, folder_root, csv_meta, cache_dir, dataset):
    where = (["--data_dir", str(folder_root), "--split", "stratified", "--valid_pct", "0.25"] if dataset == "folder"
             else ["--data_dir", str(csv_meta.parent), "--metadata", "metadata.csv", "--fold", "2"])
    out = tmp_path / "res"
    code = train.main(["--dataset", dataset, *where, "--cache_dir", str(cache_dir), "--results_dir", str(out), *TINY,
                       "--n_epochs", "2", "--mix_up", "0"])
    (rec,) = read_records(out)
    assert code == 0 and rec["status"] == "finished", rec["error"]
    assert rec["config"]["dataset"] == dataset and rec["config"]["clip_seconds"] == 5.0
    assert (rec["summary"]["n_train"], rec["summary"]["n_valid"]) == ((72, 24) if dataset == "folder" else (64, 32))
    assert rec["summary"]["accuracy"] >= 0.75, rec["history"]  # chance: 0.25


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("dataset, root, seconds, n_train, n_valid", [
    ("urbansound8k", "us8k_root", 4.0, 12, 12),
    ("dcase2017_scenes", "dcase_root", 10.0, 18, 6),  # fold 2: fold2_evaluate.txt's 6 clips
])
def test_train_runs_on_the_official_fold(tmp_path, request, cache_dir, dataset, root, seconds, n_train, n_valid):
    root, out = request.getfixturevalue(root), tmp_path / "res"
    code = train.main(["--dataset", dataset, "--data_dir", str(root), "--fold", "2", "--cache_dir", str(cache_dir),
                       "--results_dir", str(out), *TINY, "--n_epochs", "2"])
    (rec,) = read_records(out)
    assert code == 0 and rec["status"] == "finished", rec["error"]
    assert rec["config"]["dataset"] == dataset and rec["config"]["clip_seconds"] == seconds
    n_fold2 = int((DATASETS[dataset].list_clips(root).fold == 2).sum())
    assert (rec["summary"]["n_train"], rec["summary"]["n_valid"]) == (n_train, n_fold2) and n_fold2 == n_valid
