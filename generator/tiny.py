"""The built-in `tiny` backend: a real diffusers Wan text-to-video pipeline, shrunk to a few hundred kB.

Its weights are random (deterministically seeded) and its tokenizer is built here, so nothing is downloaded. It is
saved once with `save_pretrained` and then loaded by the ordinary `diffusers` backend with `from_pretrained`, the
same code path a real checkpoint takes. Its pictures are abstract coloured noise: it exists so that every other
stage (gate, marks, signing, records, verification) runs for real on any laptop. Point HALLMARK_GENERATOR=diffusers
at a real checkpoint for real footage.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from generator.base import GeneratorError
from generator.diffusers_backend import DiffusersGenerator, quiet_libraries

TINY_VERSION = "hallmark-tiny-wan-1"
_SEED = 20261121


def build_tiny_pipeline(target: Path) -> Path:
    """Build and save the tiny pipeline into `target` (atomically: a half-built directory is never left)."""
    import torch
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import T5TokenizerFast, UMT5Config, UMT5EncoderModel

    quiet_libraries()
    torch.manual_seed(_SEED)
    vae = AutoencoderKLWan(base_dim=4, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
        text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
        # rope_max_seq_len bounds the patches per axis (side / 16 here, and latent frames): Wan's own 1024 covers
        # every size and length the settings allow (32 failed at run time for any side over 512 px).
        qk_norm="rms_norm_across_heads", rope_max_seq_len=1024,
    )
    text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=128, d_model=32, d_kv=8, d_ff=64, num_layers=2,
                                               num_heads=4, relative_attention_num_buckets=8))
    # A character-level Unigram tokenizer over printable ASCII, built locally (T5-style: ▁ marks word starts).
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -1.0)]
    vocab += [(chr(code), -2.0) for code in range(33, 127)]
    backend = Tokenizer(models.Unigram(vocab, unk_id=2))
    backend.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    tokenizer = T5TokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>",
                                unk_token="<unk>", extra_ids=0)
    pipe = WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                       scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tiny-", dir=target.parent))
    try:
        pipe.save_pretrained(staging)
        (staging / "HALLMARK_TINY_VERSION").write_text(TINY_VERSION + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def tiny_generator(model_dir: Path, *, steps: int | None = None) -> DiffusersGenerator:
    """The tiny pipeline from `model_dir`, built there first if missing or from an older version."""
    marker = model_dir / "HALLMARK_TINY_VERSION"
    if not marker.is_file() or marker.read_text().strip() != TINY_VERSION:
        try:
            build_tiny_pipeline(model_dir)
        except OSError as exc:
            raise GeneratorError(f"Cannot write the tiny model to {model_dir}: {exc}",
                                 hint="Check that the data dir is writable.") from exc
    return DiffusersGenerator(model_dir, steps=steps or 4, guidance=1.0, backend="tiny", version=TINY_VERSION)
