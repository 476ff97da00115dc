"""Executors: where a job runs (a local process, an SSH host, a Slurm cluster), behind one base
class."""
