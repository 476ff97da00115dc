"""Figures and report.md, drawn from run folders alone (no torch)."""
