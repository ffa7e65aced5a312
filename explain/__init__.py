"""Explanations of recommendations."""
