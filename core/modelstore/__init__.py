"""Models on disk: their cards, finding the installed ones, and installing pinned releases."""
