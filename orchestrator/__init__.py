"""orchestrate: multi-arch builder images and per-platform Python wheel caches."""

__version__ = "0.1.0"
