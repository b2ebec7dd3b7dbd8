from genrec.datasets.Synthetic.generator import FAMILIES, Settings, generate, load

__all__ = ["FAMILIES", "Settings", "generate", "load"]
