"""AST through transformers: checkpoint loading from the hub cache or a folder, position embeddings fitted to the
clip length, the offline message, and the registry's names (tiny checkpoints the tests write, never the network)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from transformers import ASTConfig, ASTForAudioClassification

from audiosweep.config import merge
from audiosweep.errors import UserError
from audiosweep.models import AST_CHECKPOINT, arch_entry, create_arch
from tests.conftest import TINY_AST, save_to_hf_cache


def _saved_body():
    """The AST body of the checkpoint that :func:`tests.conftest.ast_hub_cache` saved (same seed, same config)."""
    torch.manual_seed(0)
    return ASTForAudioClassification(ASTConfig(**TINY_AST, num_labels=527)).audio_spectrogram_transformer


def test_pretrained_body_comes_from_the_hub_cache_with_position_embeddings_cut_to_the_clip(hf_offline):
    arch = create_arch("ast", 1, 50, pretrained=True, input_shape=(1, 128, 498))
    ref, body = _saved_body(), arch.model[0].ast
    state, ref_state = body.state_dict(), ref.state_dict()
    assert arch.pretrained and state.keys() == ref_state.keys()
    assert all(torch.equal(state[k], ref_state[k]) for k in ref_state if k != "embeddings.position_embeddings")
    pos, ref_pos = body.embeddings.position_embeddings, ref.embeddings.position_embeddings
    # 12 frequency x 101 time patches for 1024 frames; 498 frames give 49: AST keeps the middle ones.
    assert pos.shape == (1, 2 + 12 * 49, 32)
    assert torch.equal(pos[:, :2], ref_pos[:, :2])
    assert torch.equal(pos[0, 2:].reshape(12, 49, 32), ref_pos[0, 2:].reshape(12, 101, 32)[:, 26:75])
    assert arch.model.eval()(torch.randn(2, 1, 128, 498)).shape == (2, 50)
    groups = arch.splitter(arch.model)  # body, then the new head: what fine_tune freezes and what it trains
    assert len(groups) == 2 and groups[1] == list(arch.model[1].parameters())


def test_longer_clips_interpolate_the_position_embeddings(hf_offline):
    arch = create_arch("ast", 1, 10, pretrained=True, input_shape=(1, 128, 2000))
    pos = arch.model[0].ast.embeddings.position_embeddings
    assert pos.shape == (1, 2 + 12 * 199, 32)
    assert arch.model.eval()(torch.randn(1, 1, 128, 2000)).shape == (1, 10)


def test_a_checkpoint_folder_loads_with_pretrained_path(tmp_path):
    folder = tmp_path / "my-ast"
    torch.manual_seed(5)
    model = ASTForAudioClassification(ASTConfig(**TINY_AST, num_labels=3))
    model.save_pretrained(folder)
    arch = create_arch("ast", 1, 4, pretrained=True, pretrained_path=str(folder), input_shape=(1, 128, 1024))
    assert torch.equal(arch.model[0].ast.embeddings.position_embeddings,
                       model.audio_spectrogram_transformer.embeddings.position_embeddings)
    with pytest.raises(UserError, match="pretrained_path: cannot load an AST checkpoint from"):
        create_arch("ast", 1, 4, pretrained=True, pretrained_path=str(tmp_path / "absent"), input_shape=(1, 128, 99))


def test_another_hub_checkpoint_by_name_gives_its_architecture(hf_offline):
    save_to_hf_cache(ASTForAudioClassification(ASTConfig(**{**TINY_AST, "num_hidden_layers": 1}, num_mel_bins=64)),
                     hf_offline, "someone/ast-small")
    entry = arch_entry("ast/someone/ast-small")
    assert entry is not None and entry.preset["frontend"] == "kaldi" and entry.checkpoint == "someone/ast-small"
    # the AudioSet checkpoint's 128 mel bins bind ast only: another checkpoint's own are checked when it is built
    assert merge([{"arch": "ast/someone/ast-small", "n_mels": 64}]).n_mels == 64
    scratch = create_arch("ast/someone/ast-small", 1, 5, pretrained=False, input_shape=(1, 40, 300))
    body = scratch.model[0].ast
    assert len(body.layers) == 1 and body.config.hidden_size == 32 and body.config.num_mel_bins == 40
    assert scratch.model(torch.randn(2, 1, 40, 300)).shape == (2, 5)
    with pytest.raises(UserError, match="someone/ast-small was trained on 64 mel bins, got n_mels=128"):
        create_arch("ast/someone/ast-small", 1, 5, pretrained=True, input_shape=(1, 128, 300))
    assert arch_entry("ast/not-a-repo-id") is None


def test_without_pretrained_weights_ast_is_the_checkpoint_architecture_at_random():
    with torch.device("meta"):
        arch = create_arch("ast", 1, 50, pretrained=False, input_shape=(1, 128, 498))
    cfg = arch.model[0].ast.config
    assert not arch.pretrained and (cfg.hidden_size, cfg.num_hidden_layers, cfg.max_length) == (768, 12, 498)


def test_stacked_channels_are_refused():
    with pytest.raises(UserError, match="ast takes one spectrogram channel, got 3"):
        create_arch("ast", 3, 50, pretrained=False, input_shape=(3, 128, 498))


@pytest.mark.slow
def test_missing_checkpoint_says_where_to_put_it(tmp_path):
    code = ("from audiosweep.models import create_arch\n"
            "create_arch('ast', 1, 10, pretrained=True, input_shape=(1, 128, 498))\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    env.pop("HF_HUB_CACHE", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert f"could not load the AST checkpoint {AST_CHECKPOINT}" in last
    assert "config.json and model.safetensors" in last and str(tmp_path / "hf" / "hub") in last
    assert "--pretrained_path" in last and "--pretrained false" in last
