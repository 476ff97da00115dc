"""The queue of a runs folder: its state file, the front ends' client, the queue service and the
executors that start jobs here, over SSH or on Slurm."""
