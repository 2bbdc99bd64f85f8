"""Real data, cached and checksummed: MNIST, UCI Adult, scikit-learn's digits."""
from ._cache import data_home
from .mnist import load_digits_images, load_mnist, read_idx

__all__ = ["data_home", "load_mnist", "load_digits_images", "read_idx"]

try:  # the tabular loader is added by the tabular CFRL work
    from .adult import load_adult  # noqa: F401

    __all__.append("load_adult")
except ImportError:  # pragma: no cover
    pass
