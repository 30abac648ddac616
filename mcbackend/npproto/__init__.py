"""Protobuf representation of NumPy arrays (generated from ``protobufs/npproto/ndarray.proto``)."""

from ..pb.npproto import Ndarray
from . import utils

__all__ = ["Ndarray", "utils"]
