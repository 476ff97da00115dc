"""The terminal UI (Textual): the app, its screens and widgets, and a poller that follows the run
folders."""
