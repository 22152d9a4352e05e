"""Config: defaults, layering, both CLI forms, YAML files, sweep overlays and validation messages."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import time

import pytest

from audiosweep.config import (
    ALIASES,
    BOOLEAN_VALUES,
    ENVIRONMENT,
    FIELDS,
    REPLICATE,
    ROLES,
    Config,
    ConfigError,
    build_parser,
    coerce,
    effective,
    gate_keys,
    keys_with_role,
    merge,
    overlay,
    parse_args,
    parse_known,
)
from audiosweep.results import config_id
from tests.conftest import REPO


def test_defaults_are_the_reports_best_settings():
    cfg = merge([])
    assert (cfg.sample_rate, cfg.n_fft, cfg.hop_length, cfg.win_length, cfg.n_mels) == (44100, 4096, 308, 2205, 224)
    assert (cfg.mel_f_max, cfg.normalize, cfg.mix_up, cfg.batch_size, cfg.n_epochs) == (18000, "global", 0.1, 64, 80)
    assert (cfg.arch, cfg.pretrained, cfg.learning_rate, cfg.freeze_epochs) == ("resnet18", True, 1e-2, 1)
    assert cfg.hop_samples == 308 and cfg.win_lengths == [2205] and cfg.n_channels == 1


def test_both_cli_forms_and_types():
    a, explicit = parse_args(["--n_mels=128", "--arch", "densenet161", "--mix_up", "0", "--pretrained=false",
                              "--stacked_win_lengths", "[1024, 2205, 4096]", "--f_max", "16000"])
    assert a.n_mels == 128 and a.arch == "densenet161" and a.mix_up == 0.0 and a.pretrained is False
    assert a.stacked_win_lengths == [1024, 2205, 4096] and a.n_channels == 3 and a.f_max == 16000.0
    assert set(explicit) == {"n_mels", "arch", "mix_up", "pretrained", "stacked_win_lengths", "f_max"}


def test_bool_keys_work_as_bare_flags():
    cfg, _ = parse_args(["--allow_missing", "--split", "stratified", "--esc10", "--pretrained", "false"])
    assert cfg.allow_missing is True and cfg.esc10 is True and cfg.pretrained is False
    assert cfg.split == "stratified"
    assert parse_args(["--compile"])[0].compile is True


def test_yaml_then_cli_layering(tmp_path):
    f = tmp_path / "exp.yaml"
    f.write_text("n_mels: 128\nbatch_size: 32\nhop_length_ms: 10\n")
    cfg, _ = parse_args(["--config", str(f), "--batch_size=16"])
    assert cfg.n_mels == 128 and cfg.batch_size == 16
    # the YAML's ms form replaced the default sample form
    assert cfg.hop_length is None and cfg.hop_length_ms == 10 and cfg.hop_samples == 441
    cfg, _ = parse_args(["--config", str(f), "--hop_length", "308"])
    assert cfg.hop_length == 308 and cfg.hop_length_ms is None


def test_wandb_style_yaml_values(tmp_path):
    f = tmp_path / "exp.yaml"
    f.write_text("n_mels: {value: 160}\nfold: 3\n")
    cfg, _ = parse_args(["--config", str(f)])
    assert cfg.n_mels == 160 and cfg.fold == 3


def test_sweep_overlay_applies_wandb_config():
    cfg = merge([{"n_mels": 64}])
    swept = overlay(cfg, {"win_length_ms": 25, "n_mels": 128})
    assert swept.n_mels == 128 and swept.win_length is None and swept.win_lengths == [1102]
    with pytest.raises(ConfigError, match="win_length"):
        overlay(cfg, {"win_length": 8192})


def test_both_forms_in_one_layer_rejected():
    with pytest.raises(ConfigError, match="hop_length and hop_length_ms"):
        merge([{"hop_length": 308, "hop_length_ms": 7}])


@pytest.mark.parametrize("layer, keys", [
    ({"n_fft": 1024, "win_length": 2048}, ["win_length", "n_fft"]),
    ({"f_max": 30000}, ["f_max", "sample_rate"]),
    ({"sample_rate": 16000, "f_max": 18000}, ["f_max", "sample_rate", "8000"]),  # given above Nyquist
    ({"fold": 6}, ["fold", "1..5"]),
    ({"fold": 0}, ["fold", "1..5"]),
    ({"arch": "resnet19"}, ["arch", "resnet18", "densenet161", "simple_cnn"]),
    ({"n_mels": 4000, "n_fft": 1024, "win_length": 1024}, ["n_mels", "n_fft"]),
    ({"valid_pct": 1.5}, ["valid_pct"]),
    ({"normalize": "minmax"}, ["normalize", "global"]),
    ({"batch_size": "many"}, ["batch_size", "int"]),
    ({"stacked_win_lengths": [1024, 8192]}, ["stacked_win_lengths", "n_fft"]),
    ({"n_melz": 128}, ["n_melz", "did you mean n_mels"]),
    ({"learning_rate": ".nan"}, ["learning_rate", "finite", "nan"]),  # YAML spellings of NaN and infinity
    ({"learning_rate": ".inf"}, ["learning_rate", "finite", "inf"]),
    ({"mix_up": "-.inf"}, ["mix_up", "finite"]),
    ({"sample_rate": ".nan"}, ["sample_rate", "expected int", "nan"]),
    ({"n_fft": float("inf")}, ["n_fft", "expected int"]),
    ({"trial_num": -1}, ["trial_num", "0..4294967295"]),
    ({"trial_num": 2**40}, ["trial_num", "0..4294967295"]),
    ({"batch_size": 1}, ["batch_size", ">= 2"]),
    ({"valid_pct": 0}, ["valid_pct", "(0, 1)"]),
    ({"num_workers": -1}, ["num_workers", ">= 0"]),
])
def test_invalid_values_name_keys_and_ranges(layer, keys):
    with pytest.raises(ConfigError) as e:
        merge([layer])
    for k in keys:
        assert k in str(e.value)


def test_all_errors_reported_together():
    with pytest.raises(ConfigError) as e:
        merge([{"fold": 9, "arch": "vgg", "learning_rate": -1}])
    assert all(k in str(e.value) for k in ("fold", "arch", "learning_rate"))


def test_unknown_cli_key_suggests_closest():
    with pytest.raises(ConfigError, match="did you mean hop_length"):
        parse_args(["--hop_lenght", "308"])
    with pytest.raises(ConfigError, match="no such file"):
        parse_args(["--config", "/nonexistent/file.yaml"])


@pytest.mark.parametrize("text", ["n_mels: [unclosed\n", "\xff\xfe\x00bad"])
def test_unparseable_config_file_is_a_config_error(tmp_path, text):
    f = tmp_path / "bad.yaml"
    f.write_bytes(text.encode("latin-1"))
    with pytest.raises(ConfigError, match="bad.yaml: not a readable YAML file"):
        parse_args(["--config", str(f)])


def test_help_lists_every_key_with_type_and_default():
    text = " ".join(build_parser().format_help().split())
    for name, f in FIELDS.items():
        assert f"--{name}" in text
        assert f.metadata["help"].split()[0] in text
    assert "(default: 308; > 0)" in text and "(default: resnet18)" in text and "densenet201" in text
    assert "(default: 1; >= 1)" in text and "esc50/esc10: 1..5" in text  # fold: its bounds, per dataset in help


def test_train_rejects_invalid_config_before_any_work():
    t0 = time.time()
    out = subprocess.run([sys.executable, "train.py", "--n_fft", "1024", "--win_length", "2048"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "win_length" in out.stderr and "n_fft" in out.stderr and "2048" in out.stderr
    assert "Traceback" not in out.stderr
    assert time.time() - t0 < 60


def test_train_help_runs():
    out = subprocess.run([sys.executable, "train.py", "--help"], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "--stacked_win_lengths" in out.stdout and "--wandb_mode" in out.stdout
    assert "the report's keys" in out.stdout and all(f"--{name}" in out.stdout for name in ALIASES)


def test_to_dict_has_every_key():
    assert set(Config().to_dict()) == set(FIELDS)


def test_every_knob_has_a_role_and_the_roles_are_the_documented_ones():
    assert all(f.metadata["role"] in ROLES for f in FIELDS.values())
    assert set(keys_with_role(REPLICATE)) == {"trial_num", "fold", "test_fold"}
    assert set(keys_with_role(ENVIRONMENT)) == {"device", "num_workers", "data_dir", "metadata", "download_url",
                                                "download", "cache_dir", "fingerprint", "project", "wandb_mode",
                                                "wandb_verbose", "results_dir", "save_model", "pretrained_path",
                                                "lr_find", "checkpoint_every", "resume"}
    units = {k: f.metadata["unit"] for k, f in FIELDS.items() if f.metadata["unit"]}
    assert units["hop_length"] == "samples" and units["hop_length_ms"] == "ms" and units["f_max"] == "Hz"


def test_knobs_without_effect_are_recorded_as_what_the_run_does():
    cnn = merge([{"arch": "simple_cnn", "pretrained": True, "freeze_epochs": 2}])
    assert (cnn.pretrained, cnn.freeze_epochs) == (True, 2)  # kept as given: later layers build on it
    assert (cnn.effective_dict()["pretrained"], cnn.effective_dict()["freeze_epochs"]) == (False, 0)
    scratch = merge([{"arch": "resnet18", "pretrained": False, "freeze_epochs": 2}]).effective_dict()
    assert scratch["freeze_epochs"] == 0
    tuned = merge([{"arch": "resnet18"}]).effective_dict()
    assert (tuned["pretrained"], tuned["freeze_epochs"]) == (True, 1)
    stacked = merge([{"stacked_win_lengths": [1024, 2048]}]).effective_dict()
    assert stacked["win_length"] is None and stacked["win_length_ms"] is None
    # an overlay builds on the values as given, not on the recorded ones
    assert overlay(cnn, {"arch": "resnet34"}).effective_dict()["pretrained"] is True


def test_parse_known_separates_a_tools_own_options(tmp_path):
    parser = build_parser()
    parser.add_argument_group("tool").add_argument("--n-clips", type=int, default=7)
    (tmp_path / "c.yaml").write_text("n_mels: 64\n")
    cfg, explicit, extras = parse_known(["--config", str(tmp_path / "c.yaml"), "--fold=2", "--n-clips", "9"], parser)
    assert (cfg.n_mels, cfg.fold, extras) == (64, 2, {"n_clips": 9})
    assert set(explicit) == {"n_mels", "fold"}  # the keys the user set, from the file and the command line
    with pytest.raises(ConfigError, match="did you mean n_mels"):
        parse_known(["--n_mel", "3"], parser)


@pytest.mark.parametrize("argv, messages", [
    (["--n_mel", "64"], ["unknown config key 'n_mel'; did you mean n_mels?"]),  # its value: no second message
    (["--lr", "0.01", "--bs=8"], ["unknown config key 'lr'; did you mean learning_rate?",
                                  "unknown config key 'bs'; did you mean batch_size?"]),  # fastai's names
    (["--wd=0.1", "stray"], ["unknown config key 'wd'; did you mean weight_decay?",
                             "unexpected argument 'stray': options are --key value or --key=value"]),
    (["--n_mels", "64", "7"], ["unexpected argument '7': options are --key value or --key=value"]),
])
def test_an_unknown_option_is_one_message_with_a_hint(argv, messages):
    with pytest.raises(ConfigError) as e:
        parse_args(argv)
    assert [line.strip() for line in str(e.value).splitlines()[1:]] == messages


# --- the report's keys (config.ALIASES, config.BOOLEAN_VALUES) -------------------------------------------------


def test_the_alias_table_is_the_documented_one():
    assert set(ALIASES) == {"trial", "norm", "win_length_1", "win_length_2", "win_length_3", "pitch_shift",
                            "signal_shift", "add_noise"}
    assert BOOLEAN_VALUES == {"mix_up": {True: 0.4, False: 0.0}, "normalize": {True: "global", False: "none"}}


@pytest.mark.parametrize("layer, expected", [
    ({"trial": 3}, {"trial_num": 3}),
    ({"norm": True}, {"normalize": "global"}),
    ({"norm": False}, {"normalize": "none"}),
    ({"normalize": True}, {"normalize": "global"}),  # the report's booleans: SpecNormalize, or nothing
    ({"normalize": False}, {"normalize": "none"}),
    ({"normalize": "imagenet"}, {"normalize": "imagenet"}),
    # given in any order, the three windows stack as channels 1, 2, 3; the single window no longer applies
    ({"win_length_3": 4096, "win_length_1": 1102, "win_length_2": 2205},
     {"stacked_win_lengths": [1102, 2205, 4096], "win_length": None}),
    ({"pitch_shift": True}, {"pitch_p": 1.0, "pitch_semitones": 3.0}),
    ({"pitch_shift": False}, {"pitch_p": 0.0}),
    ({"signal_shift": True}, {"shift_p": 0.5, "shift_max": 0.2, "shift_roll": False}),
    ({"signal_shift": False}, {"shift_p": 0.0}),
    ({"add_noise": True}, {"noise_p": 1.0, "noise_color": "white", "noise_snr_min": 28.0, "noise_snr_max": 37.0}),
    ({"add_noise": False}, {"noise_p": 0.0}),
    ({"mix_up": True}, {"mix_up": 0.4}),
    ({"mix_up": False}, {"mix_up": 0.0}),
    ({"mix_up": 0.2}, {"mix_up": 0.2}),  # a number is the alpha itself
])
def test_the_reports_keys_map_onto_ours(layer, expected):
    record = merge([layer]).effective_dict()
    assert {k: record[k] for k in expected} == expected
    assert set(record) == set(FIELDS)  # records hold our keys only


@pytest.mark.parametrize("argv, expected", [
    (["--trial=4"], {"trial_num": 4}),
    (["--trial", "4"], {"trial_num": 4}),
    (["--norm=False"], {"normalize": "none"}),
    (["--normalize=False"], {"normalize": "none"}),
    (["--normalize", "True"], {"normalize": "global"}),
    (["--normalize=none"], {"normalize": "none"}),
    (["--norm"], {"normalize": "global"}),
    (["--win_length_1=512", "--win_length_2", "1764", "--win_length_3=4096"],
     {"stacked_win_lengths": [512, 1764, 4096]}),
    (["--mix_up=True"], {"mix_up": 0.4}),
    (["--mix_up=False"], {"mix_up": 0.0}),
    (["--mix_up", "true"], {"mix_up": 0.4}),
    (["--mix_up=1"], {"mix_up": 1.0}),  # the number 1, not true
    (["--pitch_shift"], {"pitch_p": 1.0}),  # a bare flag is true
    (["--pitch_shift=False"], {"pitch_p": 0.0}),
    (["--signal_shift", "--add_noise", "--trial", "2"], {"shift_p": 0.5, "noise_p": 1.0, "trial_num": 2}),
    (["--add_noise=True", "--signal_shift=false"], {"noise_p": 1.0, "shift_p": 0.0}),
])
def test_the_reports_keys_on_the_command_line(argv, expected):
    record = parse_args(argv)[0].effective_dict()
    assert {k: record[k] for k in expected} == expected
    assert set(record) == set(FIELDS)


@pytest.mark.parametrize("layer", [
    {"trial": 1, "trial_num": 2},
    {"norm": True, "normalize": "sample"},
    {"win_length_1": 1102, "stacked_win_lengths": [2205]},
    {"pitch_shift": True, "pitch_p": 0.5},
    {"signal_shift": True, "shift_p": 0.5},
    {"add_noise": False, "noise_p": 1},
])
def test_an_alias_with_its_target_in_one_layer_is_refused_naming_both(layer):
    alias = next(k for k in layer if k in ALIASES)
    target = next(k for k in layer if k not in ALIASES)
    message = f"{alias} and {target}: give one, not both"
    with pytest.raises(ConfigError, match=message):
        merge([layer])
    with pytest.raises(ConfigError, match=message):
        parse_args([f"--{k}={v}" for k, v in layer.items()])


def test_an_alias_and_its_target_in_different_layers_the_later_wins(tmp_path):
    assert merge([{"trial": 1}, {"trial_num": 2}]).trial_num == 2
    assert merge([{"pitch_p": 0.5}, {"pitch_shift": True}]).pitch_p == 1.0
    assert overlay(merge([{"trial_num": 2}]), {"trial": 5}).trial_num == 5  # a sweep's wandb.config
    (tmp_path / "c.yaml").write_text("trial: 3\nmix_up: true\n")
    cfg, _ = parse_args(["--config", str(tmp_path / "c.yaml"), "--trial_num", "4"])
    assert (cfg.trial_num, cfg.mix_up) == (4, 0.4)


def test_alias_values_are_checked_like_our_own():
    with pytest.raises(ConfigError, match="pitch_shift: expected bool, got 0.5"):
        merge([{"pitch_shift": 0.5}])
    with pytest.raises(ConfigError, match="trial: expected int"):
        parse_args(["--trial=first"])
    with pytest.raises(ConfigError, match="did you mean pitch_shift"):
        parse_args(["--pitch_shfit"])


def test_help_lists_the_reports_keys_with_what_they_set():
    text = " ".join(build_parser().format_help().split())
    assert "the report's keys" in text
    for name, alias in ALIASES.items():
        assert f"--{name}" in text and " ".join(alias.help.replace("%%", "%").split()) in text
    assert "true = pitch_p 1" in text and "true = shift_p 0.5" in text and "true = noise_p 1" in text
    assert "the report's true = 0.4" in text  # mix_up's own help
    assert "the report's true = global, false = none" in text  # normalize's


def test_config_files_given_twice_layer_the_later_over_the_earlier(tmp_path):
    """A sweep's recipe (``sweep run --config``) and its own ``config`` parameter both reach train.py."""
    (tmp_path / "base.yaml").write_text("n_mels: 128\nbatch_size: 32\nhop_length: 441\nnorm: false\n")
    (tmp_path / "mine.yaml").write_text("batch_size: 16\nhop_length_ms: 10\nnormalize: sample\n")
    cfg, explicit = parse_args(["--config", str(tmp_path / "base.yaml"), f"--config={tmp_path / 'mine.yaml'}",
                                "--n_mels=64"])
    assert (cfg.n_mels, cfg.batch_size, cfg.hop_length, cfg.hop_length_ms, cfg.normalize) == (
        64, 16, None, 10.0, "sample")
    assert set(explicit) == {"n_mels", "batch_size", "hop_length", "hop_length_ms", "norm", "normalize"}
    assert parse_args(["--config", str(tmp_path / "base.yaml")])[0].normalize == "none"


# --- the dB conversion of the logmel front end: ours (80 dB floor) or the report's (normalized STFT, no floor) ---


def test_the_front_end_knobs_default_to_ours_and_old_records_read_as_them():
    cfg = merge([])
    assert (cfg.top_db, cfg.stft_normalized) == (80.0, False)
    old = {k: v for k, v in cfg.effective_dict().items() if k not in ("top_db", "stft_normalized")}
    assert effective(old) == cfg.effective_dict() and config_id(old) == config_id(cfg.effective_dict())
    report = parse_args(["--top_db", "null", "--stft_normalized"])[0]
    assert (report.top_db, report.stft_normalized) == (None, True)
    assert config_id(report.effective_dict()) != config_id(cfg.effective_dict())  # settings: a run's identity
    assert FIELDS["top_db"].metadata["role"] == FIELDS["stft_normalized"].metadata["role"] == "setting"
    with pytest.raises(ConfigError, match="top_db: must be > 0, got 0"):
        merge([{"top_db": 0}])


def test_the_kaldi_front_end_ignores_the_logmel_knobs():
    kaldi = merge([{"arch": "ast", "top_db": None, "stft_normalized": True}]).effective_dict()
    assert (kaldi["top_db"], kaldi["stft_normalized"]) == (80.0, False)
    assert config_id(kaldi) == config_id(merge([{"arch": "ast"}]).effective_dict())


# --- f_max: min(18 kHz, Nyquist) when not given ------------------------------------------------------------------


@pytest.mark.parametrize("sample_rate, f_max", [(8000, 4000.0), (16000, 8000.0), (22050, 11025.0), (32000, 16000.0),
                                                (44100, 18000.0), (48000, 18000.0)])
def test_f_max_defaults_to_18_khz_capped_at_nyquist(sample_rate, f_max):
    cfg = merge([{"sample_rate": sample_rate}])
    assert cfg.f_max is None and cfg.mel_f_max == f_max
    assert cfg.effective_dict()["f_max"] == f_max  # records hold the number the run used
    assert parse_args([f"--sample_rate={sample_rate}", "--f_max=null"])[0].mel_f_max == f_max


def test_f_max_given_is_kept_and_may_not_exceed_nyquist():
    assert merge([{"sample_rate": 16000, "f_max": 8000}]).effective_dict()["f_max"] == 8000.0  # Nyquist itself
    assert merge([{"f_max": 22050}]).mel_f_max == 22050.0  # above the 18 kHz default, still below Nyquist
    with pytest.raises(ConfigError) as e:
        merge([{"sample_rate": 16000, "f_max": 8001}])
    assert "f_max=8001 must be <= sample_rate/2 = 8000" in str(e.value)
    with pytest.raises(ConfigError, match="f_min and f_max"):
        merge([{"sample_rate": 8000, "f_min": 4000}])  # f_min against the resolved f_max


def test_f_max_default_follows_a_later_sample_rate_and_keeps_old_identities():
    assert overlay(merge([]), {"sample_rate": 16000}).effective_dict()["f_max"] == 8000.0
    # a record written when f_max defaulted to 18000 is the same configuration as one leaving it out
    default = merge([]).effective_dict()
    assert config_id({**default, "f_max": 18000.0}) == config_id(merge([]).to_dict()) == config_id(default)
    assert config_id({**default, "f_max": 16000.0}) != config_id(default)


# --- augmentation: a range of an augmentation that is off has no effect -----------------------------------------

# each `needs` knob: a value other than its default, and a value of its gate that switches the augmentation on
RANGES = {"gain_db": (3.0, 1.0), "shift_max": (0.5, 0.5), "shift_roll": (True, 0.5), "noise_snr_min": (10.0, 1.0),
          "noise_snr_max": (40.0, 1.0), "noise_color": ("pink", 1.0), "noise_sigma_max": (0.005, 1.0),
          "pitch_semitones": (5.0, 1.0), "stretch_max": (0.1, 1.0), "spec_freq_width": (8, 2),
          "spec_time_width": (16, 2), "pitch_integer": (True, 1.0), "stretch_min_rate": (0.9, 1.0),
          "stretch_max_rate": (1.3, 1.0), "warp_domain": ("waveform", 1.0)}


def test_every_augmentation_range_needs_its_switch():
    assert {k for k, f in FIELDS.items() if "needs" in f.metadata} == set(RANGES)
    assert all(FIELDS[g].default in (0, 0.0) for k in RANGES for g in gate_keys(k))  # off by default
    assert {k for k, f in FIELDS.items() if f.metadata["group"] == "augmentation"} == set(RANGES) | {
        "gain_p", "shift_p", "noise_p", "polarity_p", "pitch_p", "stretch_p", "spec_freq_masks", "spec_time_masks",
        "keep_clean_copy"}


def test_the_warp_domain_counts_while_pitch_or_stretch_is_on():
    assert gate_keys("warp_domain") == ("pitch_p", "stretch_p")
    for on in ({"pitch_p": 1.0}, {"stretch_p": 0.5}):
        assert merge([{**on, "warp_domain": "waveform"}]).effective_dict()["warp_domain"] == "waveform"
    assert merge([{"gain_p": 1, "warp_domain": "waveform"}]).effective_dict()["warp_domain"] == "spectrogram"


def test_both_stretch_rates_replace_stretch_max():
    cfg = merge([{"stretch_p": 1, "stretch_max": 0.3, "stretch_min_rate": 0.9, "stretch_max_rate": 1.2}])
    assert cfg.stretch_rates == (0.9, 1.2) and cfg.effective_dict()["stretch_max"] == 0.2
    one = merge([{"stretch_p": 1, "stretch_max": 0.3, "stretch_max_rate": 1.2}])
    assert one.stretch_rates == (0.7, 1.2) and one.effective_dict()["stretch_max"] == 0.3


@pytest.mark.parametrize("key", sorted(RANGES))
def test_a_range_counts_only_while_its_augmentation_is_on(key):
    value, on = RANGES[key]
    switch = gate_keys(key)[0]
    off_cfg = merge([{key: value}])
    assert getattr(off_cfg, key) == value and off_cfg.effective_dict()[key] == FIELDS[key].default
    assert config_id(off_cfg.effective_dict()) == config_id(merge([]).effective_dict())
    on_cfg = merge([{key: value, switch: on}])
    assert on_cfg.effective_dict()[key] == value
    assert config_id(on_cfg.effective_dict()) != config_id(merge([{switch: on}]).effective_dict())


def test_pitch_range_with_pitch_shift_off_is_one_configuration():
    ids = {s: config_id(merge([{"pitch_p": 0, "pitch_semitones": s}]).effective_dict()) for s in (2, 5)}
    assert ids[2] == ids[5]
    ids = {s: config_id(merge([{"pitch_p": 1, "pitch_semitones": s}]).effective_dict()) for s in (2, 5)}
    assert ids[2] != ids[5]


@pytest.mark.parametrize("layer, keys", [
    ({"pitch_p": 1.5}, ["pitch_p", "in 0..1"]),
    ({"pitch_semitones": 13}, ["pitch_semitones", "in 0..12"]),
    ({"stretch_max": 1}, ["stretch_max", "[0, 1)"]),
    ({"noise_color": "grey"}, ["noise_color", "white", "violet"]),
    ({"noise_snr_min": 40}, ["noise_snr_min and noise_snr_max", "40 > 37"]),
    ({"spec_time_masks": -1}, ["spec_time_masks", ">= 0"]),
    ({"spec_freq_width": 0}, ["spec_freq_width", "> 0"]),
    ({"pitch_p": 1, "pitch_integer": True, "pitch_semitones": 1.5}, ["pitch_integer", "whole", "1.5"]),
    ({"stretch_p": 1, "stretch_min_rate": 1.1, "stretch_max_rate": 1.05}, ["stretch_min_rate", "1.1", "1.05"]),
    ({"stretch_max_rate": 0}, ["stretch_max_rate", "> 0"]),
    ({"keep_clean_copy": True}, ["keep_clean_copy", "switch on an augmentation"]),
    ({"keep_clean_copy": True, "pitch_p": 1, "view_channels": ["original", "augmented"]},
     ["keep_clean_copy and view_channels", "[original]"]),
    ({"frontend": "kaldi", "arch": "ast", "stretch_p": 1}, ["stretch_p", "warp_domain waveform"]),
])
def test_invalid_augmentation_values_name_keys_and_ranges(layer, keys):
    with pytest.raises(ConfigError) as e:
        merge([layer])
    assert all(k in str(e.value) for k in keys)


def test_an_architectures_front_end_fills_the_keys_the_user_leaves_out(tmp_path):
    cfg = merge([{"arch": "ast"}])
    assert (cfg.frontend, cfg.sample_rate, cfg.n_mels, cfg.hop_samples, cfg.win_lengths, cfg.f_min, cfg.mel_f_max,
            cfg.normalize) == ("kaldi", 16000, 128, 160, [400], 20.0, 8000.0, "audioset")
    own = merge([{"arch": "ast", "hop_length": 200, "normalize": "global"}])  # the user's keys win, either form
    assert (own.hop_samples, own.hop_length_ms, own.normalize, own.win_lengths) == (200, None, "global", [400])
    path = tmp_path / "c.yaml"
    path.write_text("arch: ast\nsample_rate: 22050\n")
    from_file, explicit = parse_args(["--config", str(path), "--n_mels", "128"])
    assert (from_file.sample_rate, from_file.frontend, from_file.mel_f_max) == (22050, "kaldi", 11025)
    assert "frontend" not in explicit
    assert merge([{"arch": "resnet18"}]).frontend == "logmel"


@pytest.mark.parametrize("layer, says", [
    ({"arch": "ast", "stacked_win_lengths": [400, 800]}, "stacked_win_lengths: the kaldi front end takes one window"),
    ({"arch": "ast", "stretch_p": 0.5}, "stretch_p: pitch shift and time stretch warp the logmel"),
    ({"normalize": "audioset"}, "normalize=audioset: AST's AudioSet statistics are of kaldi fbanks"),
    ({"arch": "ast", "n_mels": 64}, "n_mels: ast's AudioSet checkpoint was trained on 128 mel bins, got 64"),
    ({"arch": "resnet18", "pretrained_path": "w.pth"}, "pretrained_path: only for timm models, ast and cnn_gpt2"),
    ({"arch": "cnn_gpt2", "unfreeze_schedule": [[0, 2], [1]]}, "unfreeze_schedule: give [[epoch, blocks], ...] pairs"),
    ({"arch": "cnn_gpt2", "unfreeze_schedule": [[1, 2]]}, "unfreeze_schedule: epochs must start at 0 and increase"),
    ({"arch": "cnn_gpt2", "unfreeze_schedule": [[0, 2], [0, 4]]}, "epochs must start at 0 and increase, got [0, 0]"),
    ({"unfreeze_schedule": [[0, 2]], "arch": "simple_cnn"}, "unfreeze_schedule: simple_cnn does not expose its"),
    ({"arch": "cnn_gpt2", "unfreeze_schedule": [[0, 2]], "finetune": "head"}, "unfreeze_schedule and finetune=head"),
    ({"view_channels": []}, "view_channels: give at least one view"),
    ({"view_channels": ["original", "original"]}, "view_channels: the original view once"),
    ({"view_channels": ["original", "augmented"]}, "view_channels: an augmented view needs an augmentation"),
])
def test_front_end_combinations_that_cannot_work_are_refused(layer, says):
    with pytest.raises(ConfigError, match=re.escape(says)):
        merge([layer])


@pytest.mark.parametrize("layer, expected", [
    ({"finetune": "none"}, {"pretrained": False, "finetune": "none", "freeze_epochs": 0}),
    ({"pretrained": False, "finetune": "head"}, {"pretrained": False, "finetune": "none", "freeze_epochs": 0}),
    ({"finetune": "head", "freeze_epochs": 3}, {"pretrained": True, "finetune": "head", "freeze_epochs": 0}),
    ({"arch": "simple_cnn", "finetune": "full"}, {"pretrained": False, "finetune": "none"}),
    ({"finetune": "full", "freeze_epochs": 2}, {"pretrained": True, "finetune": "full", "freeze_epochs": 2}),
])
def test_finetune_is_recorded_as_what_the_run_does(layer, expected):
    values = merge([layer]).effective_dict()
    assert {k: values[k] for k in expected} == expected


def test_accumulate_is_a_count_of_batches():
    assert merge([{"accumulate": 4}]).accumulate == 4
    with pytest.raises(ConfigError, match="accumulate: must be >= 1, got 0"):
        merge([{"accumulate": 0}])


# --- per-channel front ends ---------------------------------------------------------------------------------------

STACKED_MS = {"stacked_win_lengths_ms": [25, 50, 100], "stacked_hop_lengths_ms": [10, 25, 50], "n_fft": 4410}


@pytest.mark.parametrize("layer, keys", [
    ({**STACKED_MS, "stacked_hop_lengths_ms": [10, 25]}, ["stacked_hop_lengths_ms", "2 hops for 3 windows"]),
    ({"stacked_win_lengths": [1024, 2048], "stacked_hop_lengths": [256, 512, 1024]},
     ["stacked_hop_lengths", "3 hops for 2 windows"]),
    ({"stacked_hop_lengths": [256]}, ["stacked_hop_lengths", "give stacked_win_lengths", "hop_length"]),
    ({"stacked_win_lengths": [1024], "stacked_hop_lengths": []}, ["stacked_hop_lengths", "at least one"]),
    ({"stacked_win_lengths_ms": []}, ["stacked_win_lengths_ms", "at least one"]),
    (STACKED_MS, ["stacked_hop_lengths_ms", "different frame counts", "add resize_to"]),
    ({**STACKED_MS, "max_frames": 250}, ["stacked_hop_lengths_ms", "add resize_to", "max_frames does not apply"]),
    ({**STACKED_MS, "resize_to": [128, 250], "max_frames": 250}, ["resize_to and max_frames", "give one"]),
    ({"resize_to": [128]}, ["resize_to", "[n_mels, frames]"]),
    ({"resize_to": [128, 0]}, ["resize_to", "> 0"]),
    ({"frontend": "kaldi", "resize_to": [128, 250]}, ["resize_to", "kaldi", "logmel"]),
    ({"stacked_win_lengths": [1024], "stacked_hop_lengths_ms": [0.01]}, ["stacked_hop_lengths_ms", "one sample"]),
    ({"stacked_win_lengths_ms": [25, 200]}, ["stacked_win_lengths_ms", "8820", "n_fft=4096"]),
    ({"log_scale": "log10"}, ["log_scale", "db", "ln"]),
    ({"stacked_win_lengths": [1024], "stacked_win_lengths_ms": [25]},
     ["stacked_win_lengths and stacked_win_lengths_ms", "one form"]),
])
def test_stacked_lengths_and_resize_errors_name_the_keys(layer, keys):
    with pytest.raises(ConfigError) as e:
        merge([layer])
    for k in keys:
        assert k in str(e.value)


def test_stacked_hops_replace_hop_length_and_one_form_replaces_the_other():
    cfg = merge([{**STACKED_MS, "resize_to": [128, 250]}])
    assert cfg.win_lengths == [1102, 2205, 4410] and cfg.hop_lengths == [441, 1102, 2205]
    recorded = cfg.effective_dict()
    assert recorded["hop_length"] is None and recorded["hop_length_ms"] is None and recorded["win_length"] is None
    assert merge([recorded]).hop_lengths == [441, 1102, 2205]  # a saved config loads back (predict)
    # a later layer's samples form replaces an earlier layer's ms form, as hop_length / hop_length_ms
    later = merge([{**STACKED_MS, "resize_to": [128, 250]}, {"stacked_hop_lengths": [441, 441, 441]}])
    assert later.stacked_hop_lengths_ms is None and later.hop_lengths == [441, 441, 441]
    # equal hops need no resize; without stacked hops every channel takes hop_length
    assert merge([{"stacked_win_lengths": [1024, 2048], "stacked_hop_lengths": [512, 512]}]).hop_lengths == [512, 512]
    assert merge([{"stacked_win_lengths": [1024, 2048], "hop_length": 300}]).hop_lengths == [300, 300]


def test_top_db_has_no_effect_under_the_ln_scale():
    assert merge([{"log_scale": "ln", "top_db": 40}]).effective_dict()["top_db"] == 80.0
    assert merge([{"log_scale": "db", "top_db": 40}]).effective_dict()["top_db"] == 40.0
    assert merge([{"frontend": "kaldi", "log_scale": "ln"}]).effective_dict()["log_scale"] == "db"


@pytest.mark.parametrize("layer, says", [
    ({"test_fold": 2, "fold": 2}, "test_fold and fold: both 2; the test fold must not validate"),
    ({"test_fold": 2, "split": "stratified"}, "test_fold: holds out an official fold; with split stratified use "
                                              "test_pct"),
    ({"test_pct": 0.2}, "test_pct: holds out a share of a stratified split; with split official use test_fold"),
    ({"test_fold": 6}, "test_fold: dataset esc50 has folds 1..5, got 6"),
    ({"test_fold": 5, "dataset": "urbansound8k", "fold": 11}, "fold: dataset urbansound8k has folds 1..10, got 11"),
    ({"test_pct": 1.0, "split": "stratified"}, "test_pct: must be in [0, 1), got 1.0"),
    ({"test_fold": 1, "dataset": "csv", "metadata": "m.csv"}, "fold: dataset csv's folds come from its metadata"),
])
def test_held_out_test_settings_that_cannot_work_are_refused(layer, says):
    with pytest.raises(ConfigError, match=re.escape(says)):
        merge([layer])


@pytest.mark.parametrize("layer, fold", [({}, 1), ({"test_fold": 1}, 2), ({"test_fold": 5}, 1), ({"fold": 3}, 3),
                                         ({"test_fold": 4, "fold": 2}, 2),
                                         ({"dataset": "urbansound8k", "test_fold": 10}, 1),
                                         ({"dataset": "dcase2017_scenes", "test_fold": 3}, 4)])
def test_the_validation_fold_follows_the_test_fold_and_records_hold_the_fold_used(layer, fold):
    cfg = merge([layer])
    assert cfg.valid_fold == fold and cfg.effective_dict()["fold"] == fold


def test_a_sweeps_test_fold_moves_the_validation_fold_it_left_out():
    assert overlay(merge([{"n_mels": 64}]), {"test_fold": 3}).effective_dict()["fold"] == 4
    assert overlay(merge([{"fold": 2}]), {"test_fold": 3}).effective_dict()["fold"] == 2


def test_old_records_without_the_test_keys_read_as_runs_without_a_test_set():
    old = merge([{"fold": 3}]).effective_dict()
    for key in ("test_fold", "test_pct"):
        old.pop(key)
    values = effective(old)
    assert (values["test_fold"], values["test_pct"], values["fold"]) == (None, 0.0, 3)
    assert config_id(old) == config_id(merge([{"fold": 3}]).effective_dict())


def test_a_string_that_is_no_yaml_value_is_judged_as_text():
    assert coerce("arch", "!x(y)") == "!x(y)"  # YAML reads a tag there; a str-typed key keeps the text
    with pytest.raises(ConfigError, match="n_mels: expected int, got '!pixel'"):
        coerce("n_mels", "!pixel")


def test_coerce_converts_each_distinct_value_once_and_hands_out_its_own_lists():
    from audiosweep.config import _coerce_scalar

    _coerce_scalar.cache_clear()
    for _ in range(3):
        assert coerce("n_mels", "64") == 64 and coerce("learning_rate", 0.01) == 0.01
    assert _coerce_scalar.cache_info().misses == 2 and _coerce_scalar.cache_info().hits == 4
    first = coerce("resize_to", "[64, 64]")
    first.append(1)
    assert coerce("resize_to", "[64, 64]") == [64, 64]  # the cached list is never the caller's
    assert coerce("n_epochs", True, errors := []) is None and errors  # True is no int, though True == 1
    assert coerce("n_epochs", 1) == 1
    with pytest.raises(ConfigError, match="n_mels: expected int"):
        coerce("n_mels", "!pixel")
    with pytest.raises(ConfigError, match="n_mels: expected int"):  # an error is raised every time, not cached
        coerce("n_mels", "!pixel")


def test_to_dict_is_asdict():
    cfg = merge([{"resize_to": [32, 64], "unfreeze_schedule": [[0, 1], [3, 4]], "arch": "resnet18"}])
    out = cfg.to_dict()
    assert out == dataclasses.asdict(cfg) and list(out) == list(dataclasses.asdict(cfg))
    out["resize_to"].append(1)
    assert cfg.resize_to == [32, 64]  # a copy


def test_lists_are_converted_once_too_and_refused_as_given():
    assert coerce("resize_to", [64, 32]) == [64, 32] and coerce("resize_to", (64, 32)) == [64, 32]
    assert coerce("unfreeze_schedule", [[0, 1], [3, 4]]) == [[0, 1], [3, 4]]
    with pytest.raises(ConfigError, match=r"arch: expected str, got \['a'\]"):  # a str key: no list, no tuple
        coerce("arch", ["a"])
    with pytest.raises(ConfigError, match="resize_to: expected int, got 'x'"):
        coerce("resize_to", ["x"])
