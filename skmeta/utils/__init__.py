"""Utilities: the registry of public learners."""

from .discovery import all_learners

__all__ = ["all_learners"]
