"""The model registry and its families. Importing the package registers every family (each module registers
itself with :func:`~audiosweep.models.base.register`); reading the registry imports no torch."""

# The import order is the order in which --help and messages list the names.
# isort: off
from . import simple_cnn, torchvision_models, cnn_gpt2, dual_stream, timm_models, ast  # noqa: F401  (register)
# isort: on
from .ast import AST_CHECKPOINT, AST_MELS, AST_PREFIX, AST_PRESET
from .base import ARCHS, Arch, ArchEntry, arch_entry, arch_names, build_model, conv_stack, create_arch, register
from .cnn_gpt2 import GPT2_CHECKPOINT
from .timm_models import TIMM_ALIASES, TIMM_PREFIX
from .torchvision_models import TORCHVISION_ARCHS

__all__ = ["ARCHS", "AST_CHECKPOINT", "AST_MELS", "AST_PREFIX", "AST_PRESET", "Arch", "ArchEntry", "GPT2_CHECKPOINT",
           "TIMM_ALIASES", "TIMM_PREFIX", "TORCHVISION_ARCHS", "arch_entry", "arch_names", "build_model", "conv_stack",
           "create_arch", "register"]
