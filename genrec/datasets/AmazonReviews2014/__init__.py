from genrec.datasets.AmazonReviews2014.dataset import Settings, load

__all__ = ["Settings", "load"]
