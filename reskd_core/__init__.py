"""reskd_core: the ResKD library (models, losses, data, training). Imports nothing heavy on its own."""

__version__ = "0.1.0"
