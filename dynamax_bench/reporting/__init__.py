"""Reporting: cells (`score`), tables, figures, the claims scorecard and the regression check."""
