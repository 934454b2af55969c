"""Placeholder until the block lands."""
