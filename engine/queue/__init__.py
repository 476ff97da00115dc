"""The queue of a runs folder: its state file, the front ends' client, the queue service and the
executors that start jobs here, over SSH or on Slurm."""

import warnings

# asyncssh imports cryptography's DSA and other deprecated algorithms, which says so in ten lines
# of CryptographyDeprecationWarning (in `diffui hosts check` and service.log): not the user's to fix
warnings.filterwarnings("ignore", message=r".* is deprecated", module=r"asyncssh(\.|$)")
