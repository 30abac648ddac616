"""The metadata messages (generated from ``protobufs/meta.proto`` into ``mcbackend.pb``)."""

from .pb.meta import ChainMeta, Coordinate, DataVariable, ExtendedValue, RunMeta, Variable

__all__ = ["ChainMeta", "Coordinate", "DataVariable", "ExtendedValue", "RunMeta", "Variable"]
