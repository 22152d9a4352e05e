"""cnn_gpt2: GPT-2 weights from the hub cache or a folder (cut to gpt2_layers), the offline message, the shapes it
takes and refuses, its parameter groups and blocks, and a whole run (tiny GPT-2 checkpoints the tests write)."""

from __future__ import annotations

import huggingface_hub.constants
import pytest
import torch
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel, GPT2Model

from audiosweep.config import merge
from audiosweep.errors import ConfigError, UserError
from audiosweep.memory import estimate_training
from audiosweep.models import GPT2_CHECKPOINT, create_arch
from audiosweep.preflight import check_model_input
from tests.conftest import save_to_hf_cache
from tests.test_train import check_record, run

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# GPT2_CHECKPOINT's layout (GPT2LMHeadModel, its vocabulary), not its size: 4 blocks of width 32, 128 positions.
TINY_GPT2 = {"n_layer": 4, "n_embd": 32, "n_head": 2, "n_positions": 128}
SMALL = {"conv_channels": [8, 16]}


def _tiny_gpt2(seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(**TINY_GPT2))


@pytest.fixture
def gpt2_cache(hf_offline):
    """The offline hub cache of :func:`tests.conftest.hf_offline` holding a tiny GPT-2 as GPT2_CHECKPOINT, which
    is returned."""
    saved = _tiny_gpt2()
    save_to_hf_cache(saved, hf_offline, GPT2_CHECKPOINT)
    return saved.transformer


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "hub"


def _same(module: torch.nn.Module, ref: torch.nn.Module) -> bool:
    state, ref_state = module.state_dict(), ref.state_dict()
    return state.keys() == ref_state.keys() and all(torch.equal(state[k], ref_state[k]) for k in ref_state)


def test_pretrained_gpt2_is_the_checkpoints_first_gpt2_layers_blocks(gpt2_cache):
    arch = create_arch("cnn_gpt2", 2, 10, pretrained=True, input_shape=(2, 40, 100),
                       options={"gpt2_layers": 2, **SMALL})
    gpt2 = arch.model[0].gpt2
    assert arch.pretrained and len(gpt2.h) == 2 and gpt2.config.n_layer == 2 and gpt2.wte is None
    assert all(_same(gpt2.h[i], gpt2_cache.h[i]) for i in range(2))
    assert _same(gpt2.wpe, gpt2_cache.wpe) and _same(gpt2.ln_f, gpt2_cache.ln_f)
    assert arch.blocks == list(gpt2.h)
    # 16 channels x 10 mel rows after two pools: tokens of 160 features, 25 of them (100 frames / 4)
    assert arch.model[0].proj.in_features == 160
    assert arch.model.eval()(torch.randn(3, 2, 40, 100)).shape == (3, 10)


def test_parameter_groups_and_what_freeze_leaves_trainable(gpt2_cache):
    arch = create_arch("cnn_gpt2", 1, 5, pretrained=True, input_shape=(1, 40, 60), options={"gpt2_layers": 3, **SMALL})
    body, rest = arch.splitter(arch.model)
    gpt2 = arch.model[0].gpt2
    assert body == [*gpt2.h.parameters(), *gpt2.ln_f.parameters()]
    ids = {id(p) for p in rest}
    assert not ids & {id(p) for p in body} and len(body) + len(rest) == len(list(arch.model.parameters()))
    new = [*arch.model[0].convs.parameters(), *arch.model[0].proj.parameters(), *arch.model[1].parameters()]
    assert all(id(p) in ids for p in [*new, gpt2.wpe.weight])
    # fastai's freeze (fine_tune's frozen epochs): GPT-2's attention and MLP weights; its LayerNorms train (train_bn)
    learn = Learner(DataLoaders.from_dsets([], []), arch.model, loss_func=nn.CrossEntropyLoss(), splitter=arch.splitter)
    learn.freeze()
    frozen = sorted(n for n, p in arch.model.named_parameters() if not p.requires_grad)
    linears = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    assert frozen == sorted(f"0.gpt2.h.{i}.{m}.{w}" for i in range(3) for m in linears for w in ("bias", "weight"))


def test_a_checkpoint_folder_loads_with_pretrained_path(tmp_path, empty_cache):
    folder = tmp_path / "my-gpt2"
    saved = GPT2Model(GPT2Config(**{**TINY_GPT2, "n_layer": 2}))
    saved.save_pretrained(folder)
    arch = create_arch("cnn_gpt2", 1, 4, pretrained=True, pretrained_path=str(folder), input_shape=(1, 16, 40),
                       options={"gpt2_layers": 2, **SMALL})
    assert arch.pretrained and _same(arch.model[0].gpt2.h, saved.h)
    # without pretrained weights, the folder's architecture at random
    scratch = create_arch("cnn_gpt2", 1, 4, pretrained=False, pretrained_path=str(folder), input_shape=(1, 16, 40),
                          options={"gpt2_layers": 1, **SMALL})
    assert not scratch.pretrained and scratch.model[0].gpt2.config.n_embd == 32 and len(scratch.blocks) == 1
    with pytest.raises(UserError, match="gpt2_layers: .*my-gpt2 has 2 blocks, got gpt2_layers=3"):
        create_arch("cnn_gpt2", 1, 4, pretrained=True, pretrained_path=str(folder), input_shape=(1, 16, 40),
                    options={"gpt2_layers": 3, **SMALL})
    with pytest.raises(UserError, match="pretrained_path: no GPT-2 config.json in"):
        create_arch("cnn_gpt2", 1, 4, pretrained=True, pretrained_path=str(tmp_path / "absent"),
                    input_shape=(1, 16, 40), options={"gpt2_layers": 2, **SMALL})
    (folder / "model.safetensors").unlink()
    with pytest.raises(UserError, match="pretrained_path: cannot load a GPT-2 checkpoint from .*model.safetensors"):
        create_arch("cnn_gpt2", 1, 4, pretrained=True, pretrained_path=str(folder), input_shape=(1, 16, 40),
                    options={"gpt2_layers": 2, **SMALL})


@pytest.mark.slow
def test_missing_checkpoint_says_where_to_put_it(empty_cache):
    with pytest.raises(UserError) as e:
        create_arch("cnn_gpt2", 1, 10, pretrained=True, input_shape=(1, 40, 100), options={"gpt2_layers": 6})
    msg = str(e.value)
    assert f"could not load the GPT-2 checkpoint {GPT2_CHECKPOINT}" in msg
    assert "config.json and model.safetensors" in msg and str(empty_cache) in msg
    assert f"hf download {GPT2_CHECKPOINT}" in msg and "--pretrained_path" in msg and "--pretrained false" in msg


def test_without_pretrained_weights_it_is_gpt2s_architecture_at_random(empty_cache):
    with torch.device("meta"):
        arch = create_arch("cnn_gpt2", 2, 50, pretrained=False, input_shape=(2, 40, 100), options={"gpt2_layers": 6})
    gpt2 = arch.model[0].gpt2
    assert not arch.pretrained and (gpt2.config.n_embd, len(gpt2.h), len(arch.blocks)) == (768, 6, 6)
    assert arch.model[0].proj.in_features == 64 * 10  # the default conv_channels [32, 64]


def test_more_tokens_than_gpt2_positions_are_refused(gpt2_cache):
    # 128 positions x 4 frames per token: 512 frames fit, 516 give 129 tokens
    create_arch("cnn_gpt2", 1, 3, pretrained=True, input_shape=(1, 8, 515), options={"gpt2_layers": 1, **SMALL})
    with pytest.raises(UserError, match="hop_length or max_frames: .* 516 frames give 129 tokens, more than GPT-2's "
                                        "128 positions; use a larger hop_length, or max_frames 512 or less"):
        create_arch("cnn_gpt2", 1, 3, pretrained=True, input_shape=(1, 8, 516), options={"gpt2_layers": 1, **SMALL})


def test_shapes_too_small_for_the_pools_are_refused_before_any_work(empty_cache):
    layer = {"arch": "cnn_gpt2", "gpt2_layers": 1, "pretrained": False, "n_mels": 3}
    with pytest.raises(ConfigError, match="needs at least 4 mel bands .* and 4 frames"):
        check_model_input(merge([layer]), 100, 50)
    check_model_input(merge([{**layer, "n_mels": 4}]), 4, 50)
    est = estimate_training(merge([{**layer, "n_mels": 40}]), 100, 50, batch_size=2)
    with torch.device("meta"):
        model = create_arch("cnn_gpt2", 1, 50, pretrained=False, input_shape=(1, 40, 100),
                            options={"gpt2_layers": 1}).model
    assert est.parameters == 4 * sum(p.numel() for p in model.parameters()) and est.activations > 0


@pytest.mark.parametrize("pretrained", ["true", "false"])
def test_a_run_trains_and_records(tmp_path, synth_root, cache_dir, gpt2_cache, pretrained):
    code, rec, _ = run(tmp_path, synth_root, cache_dir, "--arch", "cnn_gpt2", "--pretrained", pretrained,
                       "--gpt2_layers", "2", "--conv_channels", "[8, 16]", "--hop_length", "400", "--n_epochs", "1",
                       "--mix_up", "0")
    assert code == 0
    check_record(rec)
    assert rec["config"]["pretrained"] is (pretrained == "true")
    assert rec["config"]["gpt2_layers"] == 2 and rec["config"]["conv_channels"] == [8, 16]
    assert len(rec["history"]) == (2 if pretrained == "true" else 1)  # fine_tune: a frozen epoch first


def _block_params(gpt2_cache) -> int:
    return sum(p.numel() for p in gpt2_cache.h[0].parameters())


def test_progressive_unfreezing_shows_in_the_records_trainable_parameters(tmp_path, synth_root, cache_dir,
                                                                         gpt2_cache):
    code, rec, _ = run(tmp_path, synth_root, cache_dir, "--arch", "cnn_gpt2", "--gpt2_layers", "4", "--conv_channels",
                       "[8, 16]", "--hop_length", "400", "--n_epochs", "3", "--mix_up", "0", "--pretrained", "true",
                       "--unfreeze_schedule", "[[0, 1], [1, 2], [2, 4]]", "--optimizer", "adamw")
    assert code == 0
    check_record(rec)
    counts = [row["trainable_params"] for row in rec["history"]]
    block = _block_params(gpt2_cache)  # GPT-2 blocks are all alike
    assert len(counts) == 3 and counts[1] - counts[0] == block and counts[2] - counts[1] == 2 * block
    assert rec["config"]["freeze_epochs"] == 0  # the schedule replaces fine_tune's frozen epochs


def test_finetune_head_trains_the_conv_blocks_and_projection_with_gpt2_frozen(tmp_path, synth_root, cache_dir,
                                                                             gpt2_cache, capsys):
    code, rec, _ = run(tmp_path, synth_root, cache_dir, "--arch", "cnn_gpt2", "--gpt2_layers", "2", "--conv_channels",
                       "[8, 16]", "--hop_length", "400", "--n_epochs", "2", "--mix_up", "0", "--finetune", "head",
                       "--pretrained", "true")
    assert code == 0
    check_record(rec)
    assert "the frozen body runs on every batch (layers before the pretrained blocks train)" in capsys.readouterr().out
    model = create_arch("cnn_gpt2", 1, 10, pretrained=True, input_shape=(1, 40, 201),
                        options={"gpt2_layers": 2, **SMALL}).model
    gpt2 = model[0].gpt2
    frozen = sum(p.numel() for m in [*gpt2.h, gpt2.ln_f] for p in m.parameters())
    # finetune head freezes GPT-2's blocks and final LayerNorm (norms too: no train_bn); the rest trains
    assert {row["trainable_params"] for row in rec["history"]} == {sum(p.numel() for p in model.parameters()) - frozen}


@pytest.mark.parametrize("recipe", ["cnn_gpt2_pretrained", "cnn_gpt2_random"])
def test_the_recipes_build_the_two_channel_input_once_as_the_paper(recipe):
    """Both models take (2, 100, 40): the log-mel and one augmented view per clip, made once (augmented_view fixed);
    the random baseline trains without augmentation (no MixUp, nothing redrawn), 6 blocks, lr 1e-5, all trained."""
    import yaml

    from tests.conftest import REPO

    cfg = merge([yaml.safe_load((REPO / "sweeps" / "recipes" / f"{recipe}.yaml").read_text())])
    assert cfg.view_channels == ["original", "augmented"] and cfg.augmented_view == "fixed"
    assert (cfg.n_channels, cfg.n_mels, cfg.max_frames) == (2, 40, 100)
    if recipe == "cnn_gpt2_random":
        assert (cfg.mix_up, cfg.gpt2_layers, cfg.learning_rate, cfg.unfreeze_schedule) == (0, 6, 1e-5, None)
        assert not cfg.effective_dict()["pretrained"]
    else:
        assert cfg.mix_up == 0.4 and cfg.pretrained and cfg.unfreeze_schedule[-1] == [140, 12]
