"""ResNet-32 and its plain CE train step in bare `tf.nn` ops: the framework-light reference.

Why: issue #15 asks how much of our plain step's time is Keras (layer calls, autocasting,
optimizer bookkeeping) rather than the convolutions themselves. This module builds the same
network as `rmwnet_tf/models/resnet.py` (same layer shapes, same parameter count: 3x3 convs
without bias, BatchNorm with gamma/beta and moving statistics, option-A shortcuts, global
average pool, Dense with bias) as a dict of `tf.Variable`s, and one `tf.function` that does the
forward, the backward and a hand-written SGD update (Nesterov momentum and coupled L2, as the
product's classifier optimizer), with no Keras object anywhere. Initial values only need the
right shapes: a timing reference, not a training recipe.
"""

from __future__ import annotations

import tensorflow as tf

STAGE_WIDTHS = (16, 32, 64)
BLOCKS_PER_STAGE = 5
BN_MOMENTUM, BN_EPSILON = 0.9, 1e-5


class TfnnResNet32:
    """Variables of ResNet-32 by name, and the forward pass in tf.nn ops."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, seed: int = 0):
        self.trainable: dict[str, tf.Variable] = {}
        self.moving: dict[str, tf.Variable] = {}
        self._seed = seed
        self._conv_bn("stem", in_channels, STAGE_WIDTHS[0])
        channels = STAGE_WIDTHS[0]
        for stage, width in enumerate(STAGE_WIDTHS, start=1):
            for block in range(1, BLOCKS_PER_STAGE + 1):
                name = f"s{stage}b{block}"
                self._conv_bn(f"{name}_1", channels, width)
                self._conv_bn(f"{name}_2", width, width)
                channels = width
        self.trainable["logits_kernel"] = self._normal("logits_kernel", [channels, num_classes], channels)
        self.trainable["logits_bias"] = tf.Variable(tf.zeros([num_classes]), name="logits_bias")

    def _normal(self, name, shape, fan_in):
        self._seed += 1
        value = tf.random.stateless_normal(shape, [self._seed, 0]) * (2.0 / fan_in) ** 0.5
        return tf.Variable(value, name=name)

    def _conv_bn(self, name, cin, cout):
        self.trainable[f"{name}_kernel"] = self._normal(f"{name}_kernel", [3, 3, cin, cout], 9 * cin)
        self.trainable[f"{name}_gamma"] = tf.Variable(tf.ones([cout]), name=f"{name}_gamma")
        self.trainable[f"{name}_beta"] = tf.Variable(tf.zeros([cout]), name=f"{name}_beta")
        self.moving[f"{name}_mean"] = tf.Variable(tf.zeros([cout]), trainable=False)
        self.moving[f"{name}_var"] = tf.Variable(tf.ones([cout]), trainable=False)

    def num_parameters(self, trainable_only: bool = True) -> int:
        variables = list(self.trainable.values()) + ([] if trainable_only else list(self.moving.values()))
        return sum(int(tf.size(v)) for v in variables)

    # ------------------------------------------------------------------ forward
    def _conv_bn_forward(self, x, name, strides, updates):
        x = tf.nn.conv2d(x, self.trainable[f"{name}_kernel"], strides, padding="SAME")
        y, mean, var = tf.compat.v1.nn.fused_batch_norm(
            x, self.trainable[f"{name}_gamma"], self.trainable[f"{name}_beta"],
            epsilon=BN_EPSILON, is_training=True)
        updates.append((f"{name}_mean", mean))
        updates.append((f"{name}_var", var))
        return y

    def forward(self, images, updates):
        """Training-mode logits; appends (moving-statistic name, batch value) pairs to `updates`."""
        x = tf.nn.relu(self._conv_bn_forward(images, "stem", 1, updates))
        for stage, width in enumerate(STAGE_WIDTHS, start=1):
            for block in range(1, BLOCKS_PER_STAGE + 1):
                name, strides = f"s{stage}b{block}", (2 if stage > 1 and block == 1 else 1)
                r = tf.nn.relu(self._conv_bn_forward(x, f"{name}_1", strides, updates))
                r = self._conv_bn_forward(r, f"{name}_2", 1, updates)
                if x.shape[-1] != width:  # option A: subsample, zero channels either side
                    extra = width - x.shape[-1]
                    x = tf.pad(x[:, ::2, ::2, :], [[0, 0], [0, 0], [0, 0], [extra // 2, extra - extra // 2]])
                x = tf.nn.relu(r + x)
        pooled = tf.reduce_mean(x, axis=[1, 2])  # global average pool
        return tf.matmul(pooled, self.trainable["logits_kernel"]) + self.trainable["logits_bias"]


def make_train_step(net: TfnnResNet32, *, lr=0.05, momentum=0.9, weight_decay=5e-4, jit_compile=False):
    """The plain CE step: mean CE, coupled L2, SGD with Nesterov momentum (Keras' SGD formula)."""
    names = sorted(net.trainable)
    variables = [net.trainable[n] for n in names]
    velocities = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]

    @tf.function(jit_compile=jit_compile)
    def step(batch):
        images, labels = batch["train"]["image"], batch["train"]["label"]
        updates = []
        with tf.GradientTape() as tape:
            logits = net.forward(images, updates)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        grads = tape.gradient(loss, variables)
        for variable, velocity, grad in zip(variables, velocities, grads):
            grad = grad + weight_decay * variable
            velocity.assign(momentum * velocity - lr * grad)
            variable.assign_add(momentum * velocity - lr * grad)
        for name, value in updates:
            moving = net.moving[name]
            moving.assign(BN_MOMENTUM * moving + (1 - BN_MOMENTUM) * value)
        return {"train/loss": loss}

    return step
