"""The matrix file: schema and loader."""

from .loader import load_matrix
from .schema import (
    Arch,
    Bootstrap,
    BranchSpec,
    BuilderSpec,
    DistroSpec,
    EngineSpec,
    Family,
    IndexSpec,
    Matrix,
    OverrideSpec,
    PipSettings,
    Proxy,
    RegistrySpec,
    SkipSpec,
)

__all__ = [
    "Arch",
    "Bootstrap",
    "BranchSpec",
    "BuilderSpec",
    "DistroSpec",
    "EngineSpec",
    "Family",
    "IndexSpec",
    "Matrix",
    "OverrideSpec",
    "PipSettings",
    "Proxy",
    "RegistrySpec",
    "SkipSpec",
    "load_matrix",
]
