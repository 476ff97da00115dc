"""The experiments file: typed sections (the config schema), run and study specs, sweeps,
profiles, hosts, the component registry and in-place edits."""
