from genrec.datasets.AmazonReviews2018.dataset import Settings, load

__all__ = ["Settings", "load"]
