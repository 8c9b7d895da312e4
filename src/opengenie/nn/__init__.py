"""Building blocks shared by the tokenizer, the latent action model and the dynamics model."""

from opengenie.nn.quantize import FSQ, VectorQuantizer, build_quantizer
from opengenie.nn.st_transformer import KVCache, STBlock, STTransformer

__all__ = ["FSQ", "KVCache", "STBlock", "STTransformer", "VectorQuantizer", "build_quantizer"]
