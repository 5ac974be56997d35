"""The matrix file: schema and loader."""

from orchestrator.config.loader import load_matrix
from orchestrator.config.overrides import OverrideSpec
from orchestrator.config.schema import (
    Bootstrap,
    BranchSpec,
    BuilderSpec,
    DistroSpec,
    EngineSpec,
    IndexSpec,
    Matrix,
    PipSettings,
    Proxy,
    RegistrySpec,
    SkipSpec,
)

__all__ = [
    "Bootstrap",
    "BranchSpec",
    "BuilderSpec",
    "DistroSpec",
    "EngineSpec",
    "IndexSpec",
    "Matrix",
    "OverrideSpec",
    "PipSettings",
    "Proxy",
    "RegistrySpec",
    "SkipSpec",
    "load_matrix",
]
