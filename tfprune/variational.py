r"""Sparse variational dropout (Molchanov, Ashukha & Vetrov, 2017).

Each weight :math:`w_{ij}` gets a Gaussian posterior
:math:`q(w_{ij}) = \mathcal N(\theta_{ij}, \sigma^2_{ij})` with
:math:`\alpha_{ij} = \sigma^2_{ij} / \theta^2_{ij}`, learnt as
:math:`\log\sigma^2` (additive reparameterisation, so gradients of
:math:`\theta` stay low-variance at large :math:`\alpha`):

.. math:: \log\alpha = \log\sigma^2 - \log(\theta^2 + 10^{-8})

Training samples pre-activations, not weights (local reparameterisation):

.. math:: b = x\theta + \varepsilon \odot \sqrt{x^2 \sigma^2 + 10^{-8}},
          \qquad \varepsilon \sim \mathcal N(0, 1)

(for convolutions, :math:`x\theta` and :math:`x^2\sigma^2` are convolutions).
The KL divergence to the log-uniform prior is approximated by

.. math:: -\mathrm{KL} \approx k_1\,\mathrm{sigmoid}(k_2 + k_3\log\alpha)
          - \tfrac12 \log(1 + e^{-\log\alpha}) - k_1,
          \quad k_1 = 0.63576,\ k_2 = 1.87320,\ k_3 = 1.48695

and added to the loss (summed over weights, times ``kl_weight``, which
should be ``1 / number of training samples`` when the loss is a per-sample
mean). A weight with :math:`\log\alpha >` ``threshold`` (default 3, i.e.
:math:`\alpha > 20`) carries no signal and is pruned: at inference the layer
uses :math:`\theta \cdot [\log\alpha \le \text{threshold}]` and no noise.

>>> import keras, numpy as np, tfprune as tp
>>> layer = tp.regularizers.SparseVariationalDropout(keras.layers.Dense(2))
>>> y = layer(np.ones((1, 3), "float32"))
>>> tuple(layer.log_alpha().shape), float(layer.sparsity())
((3, 2), 0.0)
"""

import keras
from keras import ops

from tfprune._checks import did_you_mean

__all__ = ["SparseVariationalDropout", "K1", "K2", "K3"]

K1, K2, K3 = 0.63576, 1.87320, 1.48695
SUPPORTED = (keras.layers.Dense, keras.layers.Conv2D)
_EPS = 1e-8


@keras.saving.register_keras_serializable(package="tfprune")
class SparseVariationalDropout(keras.layers.Wrapper):
    """Wraps a ``Dense`` or ``Conv2D`` with sparse variational dropout on its kernel.

    Args:
      layer: a ``keras.layers.Dense`` or ``keras.layers.Conv2D`` (exact types).
      kl_weight: scale of the KL term added to the loss (``1 / n_train``
        for a per-sample mean loss).
      threshold: weights with :math:`\\log\\alpha` above it are pruned.
      init_log_sigma2: initial :math:`\\log\\sigma^2` of every weight.

    Example:

    >>> import keras, tfprune as tp
    >>> m = keras.Sequential([keras.Input((4,)), tp.regularizers.SparseVariationalDropout(
    ...     keras.layers.Dense(1), kl_weight=1e-3)])
    >>> m.compile("adam", "mse")
    >>> sorted(v.name for v in m.layers[0].trainable_weights)
    ['bias', 'kernel', 'log_sigma2']
    """

    def __init__(self, layer, kl_weight=1e-3, threshold=3.0, init_log_sigma2=-10.0, **kwargs):
        if isinstance(layer, dict):
            layer = keras.saving.deserialize_keras_object(layer)
        if type(layer) not in SUPPORTED:
            name = type(layer).__name__
            raise TypeError(
                f"SparseVariationalDropout wraps Dense or Conv2D layers; {getattr(layer, 'name', '?')!r} "
                f"is a {name}{did_you_mean(name, [c.__name__ for c in SUPPORTED])}")
        for arg, value in (("kl_weight", kl_weight), ("threshold", threshold),
                           ("init_log_sigma2", init_log_sigma2)):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ValueError(f"SparseVariationalDropout: {arg} must be a number, got {value!r}")
        if kl_weight < 0:
            raise ValueError(f"SparseVariationalDropout: kl_weight must be >= 0, got {kl_weight}")
        super().__init__(layer, **kwargs)
        self.kl_weight, self.threshold = float(kl_weight), float(threshold)
        self.init_log_sigma2 = float(init_log_sigma2)
        self.seed_generator = keras.random.SeedGenerator(0)

    def build(self, input_shape):
        self._build_shape = tuple(input_shape)
        if not self.layer.built:
            self.layer.build(input_shape)
        self.log_sigma2 = self.add_weight(
            name="log_sigma2", shape=self.layer.kernel.shape,
            initializer=keras.initializers.Constant(self.init_log_sigma2))
        self.built = True

    def log_alpha(self):
        """:math:`\\log\\alpha` of every kernel weight, clipped to [-10, 10]."""
        kernel = self.layer.kernel
        return ops.clip(self.log_sigma2 - ops.log(ops.square(kernel) + _EPS), -10.0, 10.0)

    def mask(self):
        """1.0 where a weight is kept (:math:`\\log\\alpha \\le` threshold), else 0.0."""
        return ops.cast(self.log_alpha() <= self.threshold, self.layer.kernel.dtype)

    def sparsity(self):
        """Fraction of kernel weights pruned."""
        return 1.0 - ops.mean(self.mask())

    def pruned_layer(self):
        """A plain copy of the wrapped layer with the pruned weights zeroed (for export)."""
        layer = type(self.layer).from_config(self.layer.get_config())
        layer.build(self._build_shape)
        weights = [ops.convert_to_numpy(w) for w in self.layer.weights]
        weights[0] = weights[0] * ops.convert_to_numpy(self.mask())
        layer.set_weights(weights)
        return layer

    def kl(self):
        """The KL approximation summed over the kernel (before ``kl_weight``)."""
        la = self.log_alpha()
        neg_kl = K1 * ops.sigmoid(K2 + K3 * la) - 0.5 * ops.log1p(ops.exp(-la)) - K1
        return -ops.sum(neg_kl)

    def _linear(self, x, kernel):
        if isinstance(self.layer, keras.layers.Dense):
            return ops.matmul(x, kernel)
        return self.layer.convolution_op(x, kernel)

    def call(self, inputs, training=None):
        layer = self.layer
        if training:
            self.add_loss(self.kl_weight * self.kl())
            mu = self._linear(inputs, layer.kernel)
            var = self._linear(ops.square(inputs), ops.exp(self.log_sigma2))
            out = mu + keras.random.normal(ops.shape(mu), seed=self.seed_generator) * ops.sqrt(
                var + _EPS)
        else:
            out = self._linear(inputs, layer.kernel * self.mask())
        if layer.use_bias:
            out = out + layer.bias
        return layer.activation(out) if layer.activation is not None else out

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(kl_weight=self.kl_weight, threshold=self.threshold,
                      init_log_sigma2=self.init_log_sigma2)
        return config
