"""ngac: natural-gradient actor-critic with pluggable curvature backends."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ngac")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
