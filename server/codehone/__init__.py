"""codehone: code completion honed on your own project."""

__version__ = "0.1.0"
