"""A small sweep: batch size x learning rate x activation x warmup on the synthetic two moons,
two seeds per point, with the CSV, the JSON and the plots written to a folder.

    python examples/sweep_small.py [OUTPUT_FOLDER]

The same from the shell: fusedmlp sweep moons --batch-sizes 16,128 --lrs 0.01,0.1,1 ...
(`fusedmlp sweep --help`). The full default grid on digits: `fusedmlp sweep`.
"""

import sys

from fusedmlp.experiments import sweep

# Worker processes import this file again: the guard keeps them from starting sweeps of their own.
if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "sweep-small"
    result = sweep("moons", batch_sizes=(16, 128), lrs=(0.01, 0.1, 1.0), activations=("tanh", "relu"),
                   warmup=(False, True), seeds=2, epochs=5, hidden=(32,), workers=2, out=out)
    print(f"{len(result.runs)} runs in {result.config['wall_time_s']:.1f} s; best points by validation accuracy:")
    for point in result.best(3):
        print(f"  batch {point['batch_size']:>3}, lr {point['lr']:<5g} {point['activation']:<5} "
              f"warmup {'on ' if point['warmup'] else 'off'}: {point['mean_score']:.3f}")
    print("wrote", ", ".join(sorted(result.files.values())))
