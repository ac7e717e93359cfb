"""cebench: benchmarking and ablation suite for Context Encoders (Pathak et al. 2016)."""

__version__ = "0.1.0"
