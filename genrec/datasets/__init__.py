"""Dataset loaders, one package each (``<Name>/config.yaml`` + a module exposing ``Settings`` and
``load(config) -> Interactions``)."""

from genrec.registry import Registry

_registry = Registry(__name__, __path__[0], "dataset")
names = _registry.names
get = _registry.get
config_file = _registry.config_file
