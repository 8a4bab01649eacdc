"""The CNN surrogate: network, normalisers, LightningModule and safe checkpoint loading."""

from surrogate.checkpoint import load_model
from surrogate.network import RoughnessCNN
from surrogate.normaliser import Normaliser, PhysicalSurrogate

__all__ = ["Normaliser", "PhysicalSurrogate", "RoughnessCNN", "load_model"]
