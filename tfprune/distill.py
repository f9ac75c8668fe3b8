"""Knowledge distillation: fine-tune a pruned model against the dense one.

After structural pruning (``tfprune.structure.prune_channels``) or a big
one-shot cut, the dense model is the best teacher there is: its soft
predictions carry more information per sample than the labels (Hinton et
al. 2015), and fine-tuning against them recovers accuracy faster than labels
alone on small data.
"""

import keras

__all__ = ["Distiller"]


@keras.saving.register_keras_serializable(package="tfprune")
class Distiller(keras.Model):
    """Trains ``student`` on ``(1 - alpha) * loss + alpha * T^2 * KL(teacher || student)``.

    .. math::
        L = (1-\\alpha)\\, \\ell(y, s) + \\alpha\\, T^2\\,
            \\mathrm{KL}\\big(\\mathrm{softmax}(t/T)\\,\\|\\,\\mathrm{softmax}(s/T)\\big)

    where ``s`` and ``t`` are the student's and teacher's logits and ``ℓ`` the
    compiled loss. The teacher runs in inference mode and is never trained:
    its variables are left out of the distiller's trainable ones, and the
    teacher model itself is not changed (its ``trainable`` flags stay as they
    were, so pruning it again later gives a trainable model).
    Calling the distiller calls the student, so compiled metrics and
    ``evaluate`` report the student; after ``fit`` use ``distiller.student``.
    Both models must output logits (no final softmax) of the same shape.

    Args:
        student: the model to train (e.g. the pruned one).
        teacher: the reference model (e.g. the dense one).
        alpha: weight of the distillation term in [0, 1].
        temperature: softening temperature ``T`` > 0.

    >>> import keras, numpy as np, tfprune as tp
    >>> teacher = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> student = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> d = tp.distill.Distiller(student, teacher, alpha=0.5, temperature=2.0)
    >>> d.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> x, y = np.random.rand(16, 4).astype("float32"), np.arange(16) % 3
    >>> _ = d.fit(x, y, epochs=1, verbose=0)
    >>> d.student is student
    True
    """

    def __init__(self, student, teacher, alpha=0.9, temperature=4.0, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"Distiller: alpha must be in [0, 1]; got {alpha!r}.")
        if not float(temperature) > 0.0:
            raise ValueError(f"Distiller: temperature must be > 0; got {temperature!r}.")
        s_shape, t_shape = _output_shape(student), _output_shape(teacher)
        if s_shape is not None and t_shape is not None and s_shape[1:] != t_shape[1:]:
            raise ValueError(f"Distiller: student '{student.name}' outputs {s_shape} but "
                             f"teacher '{teacher.name}' outputs {t_shape}; they must match.")
        self.student = student
        self.teacher = teacher
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        # Both models carry their own weights: nothing left to build, and
        # saving before the first call must not warn about missing weights.
        self.built = bool(student.built and teacher.built)

    # Freezing the teacher with `teacher.trainable = False` would change the
    # caller's model for good (and every clone or pruned copy of it); the
    # teacher's variables are moved to the non-trainable side here instead.
    @property
    def trainable_weights(self):
        return _minus(super().trainable_weights, self.teacher.variables)

    @property
    def non_trainable_weights(self):
        return _minus(self.weights, self.trainable_weights)

    @property
    def trainable_variables(self):
        return _minus(super().trainable_variables, self.teacher.variables)

    @property
    def non_trainable_variables(self):
        return _minus(self.variables, self.trainable_variables)

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        hard = super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                    training=training)
        if self.alpha == 0.0:
            return hard
        ops = keras.ops
        t = self.temperature
        teacher = ops.stop_gradient(self.teacher(x, training=False))
        p = ops.softmax(ops.cast(teacher, "float32") / t, axis=-1)
        log_q = ops.log_softmax(ops.cast(y_pred, "float32") / t, axis=-1)
        # KL(p || q) = sum p (log p - log q); the p log p term has no gradient
        # but keeps the reported loss >= 0 and 0 when student == teacher.
        kl = ops.sum(p * (ops.log(ops.maximum(p, 1e-12)) - log_q), axis=-1)
        soft = ops.mean(kl) * (t * t)
        return (1.0 - self.alpha) * hard + self.alpha * soft

    def get_config(self):
        return {
            "student": keras.saving.serialize_keras_object(self.student),
            "teacher": keras.saving.serialize_keras_object(self.teacher),
            "alpha": self.alpha,
            "temperature": self.temperature,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        student = keras.saving.deserialize_keras_object(config.pop("student"))
        teacher = keras.saving.deserialize_keras_object(config.pop("teacher"))
        return cls(student, teacher, **config)


def _minus(variables, excluded):
    excluded = {id(v) for v in excluded}
    return [v for v in variables if id(v) not in excluded]


def _output_shape(model):
    try:
        return tuple(model.output_shape)
    except (AttributeError, ValueError, TypeError):
        return None
