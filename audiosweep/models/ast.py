"""The Audio Spectrogram Transformer's registry entries: ``ast`` (AST_CHECKPOINT, fine-tuned on AudioSet) and
``ast/<repo>`` (any AST checkpoint on the Hugging Face hub), with the front end AST was trained on. The network is
in ``ast_net.py``."""

from __future__ import annotations

from .base import Arch, ArchEntry, RunConfig, register, register_pattern
from .hf_hub import checkpoint_weights

AST_PREFIX, AST_CHECKPOINT = "ast/", "MIT/ast-finetuned-audioset-10-10-0.4593"
AST_MELS = 128  # num_mel_bins of the AudioSet checkpoints: the frequency axis of the patch grid
AST_FRAMES = 1024  # the AudioSet checkpoints' max_length (10.24 s): the input length when none is given
# What AST's checkpoints were trained on (the AST paper, section 2.1; ASTFeatureExtractor's defaults): 16 kHz
# audio, 128 Kaldi fbank bins (from 20 Hz, Kaldi's default) every 10 ms over 25 ms Hann windows, normalised
# with AudioSet's statistics. A user's own value of any of these keys wins.
AST_PRESET = {"frontend": "kaldi", "sample_rate": 16000, "n_mels": AST_MELS, "hop_length_ms": 10.0,
              "win_length_ms": 25.0, "f_min": 20.0, "f_max": None, "normalize": "audioset"}
# pretrained_path: a checkpoint folder (config.json, model.safetensors)
AST_FIELDS = {"pretrainable": True, "preset": AST_PRESET, "takes_shape": True, "local_weights": True,
              "weights": checkpoint_weights}


def _audioset_mels(cfg: RunConfig) -> str | None:
    """AST_CHECKPOINT's weights only fit its own number of mel bins."""
    if cfg.pretrained and cfg.finetune != "none" and cfg.n_mels != AST_MELS:
        return (f"n_mels: ast's AudioSet checkpoint was trained on {AST_MELS} mel bins, got {cfg.n_mels}; use n_mels "
                f"{AST_MELS}, or --pretrained false")
    return None


@register("ast", checkpoint=AST_CHECKPOINT, rules=(_audioset_mels,), **AST_FIELDS)
def ast(n_in: int, n_out: int, pretrained: bool = True, pretrained_path: str | None = None,
        input_shape: tuple[int, int, int] | None = None, checkpoint: str = AST_CHECKPOINT) -> Arch:
    """AST body from ``checkpoint`` (position embeddings fitted to the input) + a new head: ast_net.py."""
    from .ast_net import build_ast

    return build_ast(checkpoint, n_in, n_out, pretrained, pretrained_path,
                     input_shape or (n_in, AST_MELS, AST_FRAMES), default_config=checkpoint == AST_CHECKPOINT)


def _resolve(name: str) -> ArchEntry | None:
    """The entry of ``ast/<owner>/<repo>``: ast's, with that checkpoint (whose own mel bins the builder checks)."""
    return ArchEntry(ast, checkpoint=name.removeprefix(AST_PREFIX), **AST_FIELDS) if name.count("/") == 2 else None


register_pattern(AST_PREFIX, "ast/<hub repo>", _resolve)
