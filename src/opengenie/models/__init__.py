"""The three Genie models and the World that plays them."""

from opengenie.models.dynamics import Dynamics
from opengenie.models.lam import LatentActionModel
from opengenie.models.maskgit import maskgit_fill, rollout
from opengenie.models.tokenizer import VideoTokenizer
from opengenie.models.world import World

__all__ = ["Dynamics", "LatentActionModel", "VideoTokenizer", "World", "maskgit_fill", "rollout"]
