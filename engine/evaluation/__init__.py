"""What a set of samples measures: FID with its floor, class histogram and entropy, diversity,
novelty; and the KS test of the schedules."""
