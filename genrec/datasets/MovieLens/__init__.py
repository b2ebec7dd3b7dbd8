from genrec.datasets.MovieLens.dataset import Settings, load

__all__ = ["Settings", "load"]
