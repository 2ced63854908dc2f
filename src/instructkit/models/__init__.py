"""Model registry: bundled CPU models, local folders and hub ids, with a dequantized-weights cache."""

from instructkit.models.manifest import ModelFolderError, verify_folder, write_manifest
from instructkit.models.registry import (
    BUNDLED,
    ModelNotFoundError,
    ModelNotInstalledError,
    ResolvedModel,
    cache_path,
    cache_root,
    describe,
    is_cached,
    load_model,
    load_tokenizer,
    pad_id,
    prepare,
    resolve,
)

__all__ = [
    "BUNDLED",
    "ModelFolderError",
    "ModelNotFoundError",
    "ModelNotInstalledError",
    "ResolvedModel",
    "cache_path",
    "cache_root",
    "describe",
    "is_cached",
    "load_model",
    "load_tokenizer",
    "pad_id",
    "prepare",
    "resolve",
    "verify_folder",
    "write_manifest",
]
