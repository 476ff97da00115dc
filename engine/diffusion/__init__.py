"""The diffusion core: noise schedules, degradations (Gaussian, morph), samplers, the networks
and the latents of sampling studies."""
