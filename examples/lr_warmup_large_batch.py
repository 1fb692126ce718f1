"""Learning-rate warmup for a large batch: the same large learning rate, with and without a
linear warmup, on the bundled digits.

With batch 256, momentum 0.9 and lr 2.0, the first steps from random weights are too violent
for tanh units: without warmup most seeds end no better than chance, while ramping the rate up
over the first 30 steps (5 epochs) lets every seed train. (Goyal et al. 2017, "Accurate, large
minibatch SGD", use the same trick at ImageNet scale.)

    python examples/lr_warmup_large_batch.py
"""

import numpy as np

import fusedmlp
from fusedmlp.datasets import load_dataset, train_test_split

X, y = load_dataset("digits")
X_train, X_val, y_train, y_val = train_test_split(X, y, test_fraction=0.2, seed=0)
backend = "cpu" if fusedmlp.native_available() else "numpy"
settings = dict(epochs=15, batch_size=256, lr=2.0, momentum=0.9)
steps_per_epoch = -(-len(y_train) // settings["batch_size"])

print(f"digits, MLP [64, 128, 10] tanh, batch {settings['batch_size']}, lr {settings['lr']}, "
      f"momentum {settings['momentum']}, {settings['epochs']} epochs ({steps_per_epoch} steps each)")
print(f"{'warmup steps':>12}  validation accuracy per seed          mean")
for warmup_steps in (0, 30):
    scores = []
    for seed in range(4):
        net = fusedmlp.MLP([64, 128, 10], activation="tanh", backend=backend, seed=seed)
        net.fit(X_train, y_train, warmup_steps=warmup_steps, **settings)
        scores.append(net.score(X_val, y_val))
    print(f"{warmup_steps:>12}  {'  '.join(f'{s:.3f}' for s in scores)}  {np.mean(scores):.3f}")
