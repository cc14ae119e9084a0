"""Building segment_anything ``Sam`` models from their configurations.

Everything here uses segment_anything's own classes (ImageEncoderViT, PromptEncoder,
MaskDecoder, TwoWayTransformer), so every code path is the one the official models take.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

__all__ = ["SamConfig", "MODEL_CONFIGS", "build_sam", "random_sam", "TINY_TEST_CONFIG"]


@dataclass(frozen=True)
class SamConfig:
    """Sizes of a SAM model. The official models differ only in the encoder fields."""

    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    img_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_hidden_dim: int = 256
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)

    @property
    def embedding_size(self) -> int:
        """Side of the (square) image-embedding grid: img_size // patch_size."""
        return self.img_size // self.patch_size


MODEL_CONFIGS: dict[str, SamConfig] = {
    "vit_b": SamConfig(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": SamConfig(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": SamConfig(1280, 32, 16, (7, 15, 23, 31)),
}

# A very small model for fast unit tests: 128-px input, 16x16 embedding grid, 64x64 logits.
TINY_TEST_CONFIG = SamConfig(
    encoder_embed_dim=32,
    encoder_depth=2,
    encoder_num_heads=2,
    encoder_global_attn_indexes=(1,),
    img_size=128,
    patch_size=8,
    window_size=4,
    prompt_embed_dim=32,
    mask_in_chans=8,
    decoder_mlp_dim=64,
    decoder_num_heads=2,
    iou_head_hidden_dim=32,
)


def build_sam(config: SamConfig | str) -> Sam:
    """Build an (untrained, default-initialised) ``Sam`` in eval mode from a config or a name.

    ``config`` is a :class:`SamConfig` or one of ``"vit_b"``, ``"vit_l"``, ``"vit_h"``.
    """
    if isinstance(config, str):
        if config not in MODEL_CONFIGS:
            raise ValueError(
                f"Unknown model type {config!r}; expected one of {sorted(MODEL_CONFIGS)}."
            )
        config = MODEL_CONFIGS[config]
    if not isinstance(config, SamConfig):
        raise TypeError(f"config must be a SamConfig or a model name, not {type(config).__name__}.")
    c = config
    grid = c.embedding_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=c.encoder_depth,
            embed_dim=c.encoder_embed_dim,
            img_size=c.img_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=c.encoder_num_heads,
            patch_size=c.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=c.encoder_global_attn_indexes,
            window_size=c.window_size,
            out_chans=c.prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=c.prompt_embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(c.img_size, c.img_size),
            mask_in_chans=c.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=c.decoder_depth,
                embedding_dim=c.prompt_embed_dim,
                mlp_dim=c.decoder_mlp_dim,
                num_heads=c.decoder_num_heads,
            ),
            transformer_dim=c.prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=c.iou_head_hidden_dim,
        ),
        pixel_mean=list(c.pixel_mean),
        pixel_std=list(c.pixel_std),
    )
    sam.eval()
    return sam


def random_sam(config: SamConfig | str = TINY_TEST_CONFIG, seed: int = 0) -> Sam:
    """A ``Sam`` with seeded random weights, for parity tests and demos of the code paths.

    Parameters that segment_anything initialises to zero (absolute and relative position
    embeddings) get small random values too, so that every coordinate influences the output.
    The same ``(config, seed)`` always gives bit-identical weights.
    """
    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        sam = build_sam(config)
        with torch.no_grad():
            for name, p in sam.named_parameters():
                if "pos_embed" in name or "rel_pos" in name:
                    p.copy_(torch.randn_like(p) * 0.02)
    finally:
        torch.random.set_rng_state(gen_state)
    return sam.eval()
