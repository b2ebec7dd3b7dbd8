from genrec.datasets.AmazonReviews2023.dataset import CATEGORIES, Settings, download_files, load

__all__ = ["CATEGORIES", "Settings", "download_files", "load"]
