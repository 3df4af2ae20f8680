"""hpo: how few training epochs does it take to reach a target accuracy, and which
architecture gets there?  Optuna studies of Keras models, stored in an RDB."""

from hpo.errors import ConfigError, DataError, HpoError, StorageError, StudyMismatchError

__all__ = ["ConfigError", "DataError", "HpoError", "StorageError", "StudyMismatchError", "__version__"]
__version__ = "0.1.0"
