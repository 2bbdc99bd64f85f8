"""Real data, cached and checksummed: MNIST, UCI Adult, scikit-learn's digits."""
from ._cache import data_home
from .adult import TabularDataset, load_adult
from .mnist import load_digits_images, load_mnist, read_idx

__all__ = ["data_home", "load_mnist", "load_digits_images", "read_idx", "load_adult", "TabularDataset"]
