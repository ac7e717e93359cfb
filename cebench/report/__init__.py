"""`cebench report`: comparison tables against the published baselines, ablation statistics, figures, MD/HTML/LaTeX."""

from cebench.report.render import report

__all__ = ["report"]
