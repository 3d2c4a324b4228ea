"""Help texts shared by the verbs of the ``orthrus`` command (orthrus_sglang/cli.py, train/cli.py)."""

# Help texts name their default with argparse's %(default)s, so what is printed is what is used.
D = " (default: %(default)s)"
# Every verb that runs torch on the CPU (orthrus_sglang/threads.py).
THREADS_HELP = "torch CPU threads (default: $ORTHRUS_THREADS, else half the CPUs, at most 8)"
MODEL_HELP = "Orthrus checkpoint dir, hub id, or the demo model" + D
