"""diffui's engine: everything that computes. It never imports Textual, so it runs headless on a
GPU box; docs/architecture.md says what each package may import."""
