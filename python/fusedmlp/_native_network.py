"""What the CPU and CUDA backends share: both wrap a compiled network object (`_net`) that holds
the parameters layer by layer and offers forward_logits, loss_and_grad and reset_optimizer."""

from __future__ import annotations


class NativeNetworkBackend:
    """Subclasses set self._net (a MlpFloat32/MlpFloat64 of _native or _cuda) and self._layers."""

    def get_parameters(self):
        layers = [self._net.get_layer(l) for l in range(self._layers)]
        return [w for w, _ in layers], [b for _, b in layers]

    def set_parameters(self, weights, biases):
        for l, (w, b) in enumerate(zip(weights, biases)):
            self._net.set_layer(l, w, b)

    def logits(self, X):
        return self._net.forward_logits(X)

    def loss_and_grad(self, X, y):
        return self._net.loss_and_grad(X, y)

    def reset_optimizer(self):
        self._net.reset_optimizer()
