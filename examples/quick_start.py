"""Quick start: train an MLP on the bundled handwritten digits, score it, save it, load it.

    python examples/quick_start.py
"""

import os
import tempfile

import fusedmlp
from fusedmlp.datasets import load_dataset, train_test_split

# 1797 8x8 images, pixel values scaled to [0, 1]; labels 0..9.
X, y = load_dataset("digits")
X_train, X_test, y_train, y_test = train_test_split(X, y, test_fraction=0.25, seed=0)

backend = "cpu" if fusedmlp.native_available() else "numpy"
net = fusedmlp.MLP([64, 128, 10], activation="relu", loss="cross_entropy", backend=backend, seed=0)
history = net.fit(X_train, y_train, epochs=20, batch_size=32, lr=0.05, momentum=0.9)

print(f"{net}")
print(f"final training loss {history.epoch_loss[-1]:.4f} after {history.steps} steps")
print(f"test accuracy       {net.score(X_test, y_test):.4f}")

with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "digits-model.npz")
    net.save(path)
    again = fusedmlp.load(path, backend=backend)
    assert (again.predict(X_test) == net.predict(X_test)).all()
    print(f"saved and reloaded: the same {len(X_test)} predictions")
