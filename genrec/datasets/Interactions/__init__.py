from genrec.datasets.Interactions.dataset import Settings, export, load

__all__ = ["Settings", "export", "load"]
