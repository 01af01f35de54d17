"""The user-facing error type, re-exported from the bottom layer (`trainers.errors`) so that
orchestrator modules and older imports keep working."""

from trainers.errors import GridError, did_you_mean

__all__ = ["GridError", "did_you_mean"]
