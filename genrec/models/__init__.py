"""Recommenders, one package each (``<Name>/config.yaml`` + a module exposing ``Settings``)."""

from genrec.registry import Registry

_registry = Registry(__name__, __path__[0], "model")
names = _registry.names
get = _registry.get
config_file = _registry.config_file
