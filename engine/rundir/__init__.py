"""The run folder, the single source of truth about a run: its event schema, the fold of its
events into progress, and its derived status."""
