"""What a worker process runs in a run folder: training (with its evaluation pass, checkpoints
and figures' arrays) or a sampling study."""
