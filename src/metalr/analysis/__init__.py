"""Analyses for the appendix: gradient fidelity and the cost benchmark."""
