"""The report stage: AblationResults in, one self-contained HTML page per ablation out."""

from dcgan.report.render import render_index, render_report, summary

__all__ = ["render_index", "render_report", "summary"]
