"""The datasets diffui trains and evaluates on, and where each comes from."""
