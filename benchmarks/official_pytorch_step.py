"""Times the official PyTorch RMNW-Net steps (plain CE and meta) on this machine, for issue #15.

    python benchmarks/official_pytorch_step.py --official_repo=PATH --batch_size=100

PATH is a checkout of the official RMNW-Net code (Ghosh & Lan, WACV 2021; the repository that
holds `resnet.py` and `trainer.py`), or a git directory of it with no work tree: then
`git show REV:resnet.py` (--official_rev, default HEAD) extracts that one file to a temporary
folder. Its `resnet.py` is imported at run time from there (ResNet32, VNet, and MetaModule's
`update_params`); nothing of it is copied into this project. torch is not a dependency of the
project: `pip install -e ".[torch-reference]"`, or any CPU build of torch.

Two steps, each with its own model and optimizers, are timed round-robin in one process after
`--warmup` untimed calls of each (as benchmarks/step_benchmark.py does, so machine drift hits
both alike):
  torch_plain  the plain CE step on the official ResNet32 with the official classifier optimizer
               (SGD lr 0.05, momentum 0.9, Nesterov, weight decay 5e-4);
  torch_meta   one iteration of the official train loop (trainer.py lines 122-203): a fresh meta
               model loaded with the model's state, the virtual step through VNet weights with
               `create_graph` gradients and `update_params`, the meta MAE, the VNet step, then
               the real step weighted by the updated VNet. Data loading, the evaluation every 100
               iterations and checkpointing are left out; synthetic batches stand in for CIFAR.
Output: one `s/step` line per step, then `time torch_plain = X s`, `time torch_meta = Y s`
(medians over --steps rounds) and last `ratio torch_meta/torch_plain = R`, in the style of
scripts/benchmark_step.py, whose `time exact = ...` is the figure to compare with.
With --with_ours, this project's plain and default meta steps are timed in the same rounds and
`ratio ours_meta/torch_meta = R` is printed (issue #15's target: at most 0.5).
"""

from __future__ import annotations

import importlib.util
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("official_repo", None, "Checkout (or git directory) of the official RMNW-Net code.")
flags.DEFINE_string("official_rev", "HEAD", "Revision of resnet.py to use when --official_repo has no work tree.")
flags.DEFINE_integer("batch_size", 100, "Train and meta batch size.", lower_bound=1)
flags.DEFINE_integer("num_classes", 10, "Number of classes.", lower_bound=2)
flags.DEFINE_integer("image_size", 32, "Image height and width.", lower_bound=8)
flags.DEFINE_integer("steps", 10, "Timed rounds; each round times one step of each kind.", lower_bound=1)
flags.DEFINE_integer("warmup", 3, "Untimed steps of each kind before timing.", lower_bound=0)
flags.DEFINE_integer("threads", 0, "torch.set_num_threads (0: torch's default).", lower_bound=0)
flags.DEFINE_float("lr", 0.05, "Classifier learning rate, also the virtual step's (trainer.py before iter 20000).")
flags.DEFINE_integer("seed", 0, "Seed of the initial weights and of the synthetic batches.")
flags.DEFINE_bool("with_ours", False, "Also build this project's plain and default meta step (ResNet-32, XLA as "
                  "--jit_compile=auto picks) and time all four round-robin in this one process.")
flags.mark_flag_as_required("official_repo")

# The official optimizers (trainer.py lines 97-106): the classifier's lr is a flag (0.05, the
# product's; their parser's default is 0.1), the rest is as there.
MOMENTUM, NESTEROV, WEIGHT_DECAY, VNET_LR = 0.9, True, 5e-4, 1e-3


def load_official_resnet(repo: str, rev: str = "HEAD"):
    """The official `resnet.py` as a module, from a checkout or from a git directory."""
    path = pathlib.Path(repo).expanduser()
    source = path / "resnet.py"
    if not source.is_file():
        try:
            text = subprocess.run(["git", f"--git-dir={path}", "show", f"{rev}:resnet.py"], check=True,
                                  capture_output=True, text=True).stdout
        except (OSError, subprocess.CalledProcessError) as error:
            stderr = getattr(error, "stderr", "") or str(error)
            raise app.UsageError(f"--official_repo={repo}: no resnet.py there, and `git show {rev}:resnet.py` "
                                 f"failed: {stderr.strip()}") from error
        with tempfile.TemporaryDirectory(prefix="rmwnet_official_") as folder:
            extracted = pathlib.Path(folder) / "resnet.py"
            extracted.write_text(text)
            module = _import_file(extracted)  # the module needs its file only while it loads
        return module, f"{path}@{rev}:resnet.py"
    return _import_file(source), str(source)


def _import_file(source: pathlib.Path):
    spec = importlib.util.spec_from_file_location("rmwnet_official_resnet", source)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def official_revision(repo: str, rev: str) -> str:
    """The commit the official code was taken from, or '?' when PATH is no git repository."""
    path = pathlib.Path(repo).expanduser()
    for args in (["git", "-C", str(path), "rev-parse", rev], ["git", f"--git-dir={path}", "rev-parse", rev]):
        try:
            return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()[:12]
        except (OSError, subprocess.CalledProcessError):
            continue
    return "?"


def synthetic_batches(torch, batch_size, image_size, num_classes, seed):
    """A train batch and a meta batch in NCHW, as the official DataLoaders hand them over."""
    generator = torch.Generator().manual_seed(seed)

    def batch():
        images = torch.randn(batch_size, 3, image_size, image_size, generator=generator)
        labels = torch.randint(0, num_classes, (batch_size,), generator=generator)
        return images, labels

    return batch(), batch()


def top1(torch, logits, labels):
    """Top-1 precision in percent (what trainer.py's `accuracy` returns for topk=(1,))."""
    return (logits.argmax(dim=1) == labels).float().sum() * (100.0 / labels.size(0))


class OfficialSteps:
    """The plain CE step and the official meta step, each on its own ResNet32 and optimizers."""

    def __init__(self, torch, resnet, *, num_classes, lr, train, meta):
        self.torch, self.resnet, self.num_classes, self.lr = torch, resnet, num_classes, lr
        self.train, self.meta = train, meta
        self.plain_model = resnet.ResNet32(num_classes)
        self.plain_optimizer = self._classifier_optimizer(self.plain_model)
        self.model = resnet.ResNet32(num_classes)
        self.model_optimizer = self._classifier_optimizer(self.model)
        self.vnet = resnet.VNet(1, 100, 1)
        self.vnet_optimizer = torch.optim.SGD(self.vnet.params(), VNET_LR, momentum=MOMENTUM,
                                              nesterov=NESTEROV, weight_decay=WEIGHT_DECAY)

    def _classifier_optimizer(self, model):
        # MetaModule keeps its weights as buffers: `params()` lists them, `parameters()` is empty.
        return self.torch.optim.SGD(model.params(), self.lr, momentum=MOMENTUM, nesterov=NESTEROV,
                                    weight_decay=WEIGHT_DECAY)

    def plain_step(self):
        """Forward, mean CE, backward, SGD update; returns the loss (the .item() waits for it)."""
        F = self.torch.nn.functional
        images, labels = self.train
        self.plain_model.train()
        logits = self.plain_model(images)
        loss = F.cross_entropy(logits, labels)
        top1(self.torch, logits.detach(), labels)
        self.plain_optimizer.zero_grad()
        loss.backward()
        self.plain_optimizer.step()
        return loss.item()

    def meta_step(self):
        """One iteration of the official train loop, step by step as trainer.py (line numbers of
        the official trainer.py at its WACV commit in the comments); returns the real loss."""
        torch, F = self.torch, self.torch.nn.functional
        images, labels = self.train
        meta_images, meta_labels = self.meta
        for group in self.model_optimizer.param_groups:  # 123: adjust_learning_rate, before iter 20000
            group["lr"] = self.lr
        self.model.train()  # 124
        # 129-130: a fresh ResNet32 each iteration, loaded with the model's weights and BN state.
        meta_model = self.resnet.ResNet32(self.num_classes)
        meta_model.load_state_dict(self.model.state_dict())
        # 133-143: per-sample CE on the train batch, weights from VNet on the detached losses,
        # normalised by their sum unless it is zero, and the weighted sum.
        logits = meta_model(images)
        cost = F.cross_entropy(logits, labels, reduction="none")
        cost_v = torch.reshape(cost, (len(cost), 1))
        v_lambda = self.vnet(cost_v.data)
        norm_c = torch.sum(v_lambda)
        v_lambda_norm = v_lambda / norm_c if norm_c != 0 else v_lambda
        loss_meta = torch.sum(cost_v * v_lambda_norm)
        # 144-152: gradients with create_graph, the virtual SGD step (plain, no momentum) by
        # update_params, at meta_lr = lr (ResNet32 before iter 20000, line 150).
        meta_model.zero_grad()
        grads = torch.autograd.grad(loss_meta, meta_model.params(), create_graph=True)
        meta_model.update_params(lr_inner=self.lr, source_params=grads)
        del grads
        # 160-166: the meta loss, MAE as the official code computes it, 2 * mean(1 - p_y).
        meta_logits = meta_model(meta_images)
        probabilities = F.softmax(meta_logits, dim=-1)
        rows = torch.arange(meta_logits.size(0)).type(torch.LongTensor)
        loss_vnet = 2 * torch.mean(1.0 - probabilities[rows, meta_labels])
        top1(torch, meta_logits.data, meta_labels)  # 169: prec_meta
        # 172-174: the VNet update (its backward also fills the meta model's .grad, as there).
        self.vnet_optimizer.zero_grad()
        loss_vnet.backward()
        self.vnet_optimizer.step()
        # 177-197: the real step, a fresh forward of the model, weights from the updated VNet
        # without gradient, the same normalisation, then the classifier update.
        final_logits = self.model(images)
        cost_w = F.cross_entropy(final_logits, labels, reduction="none")
        cost_v = torch.reshape(cost_w, (len(cost_w), 1))
        top1(torch, final_logits.data, labels)  # 180: prec_train
        with torch.no_grad():
            w_new = self.vnet(cost_v)
        norm_v = torch.sum(w_new)
        w_v = w_new / norm_v if norm_v != 0 else w_new
        loss = torch.sum(cost_v * w_v)
        self.model_optimizer.zero_grad()
        loss.backward()
        self.model_optimizer.step()
        loss_vnet.item()  # 199: the smoothed meta loss reads it
        return loss.item()  # 202


def time_interleaved(steps: dict, *, warmup: int, rounds: int) -> dict:
    """Median seconds per step of each callable, timed round-robin after `warmup` calls each.
    torch on CPU runs eagerly and every step ends in .item(), so the clock sees the whole step."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv):
    del argv
    import torch

    if FLAGS.threads:
        torch.set_num_threads(FLAGS.threads)
    resnet, source = load_official_resnet(FLAGS.official_repo, FLAGS.official_rev)
    # resnet.py initialises with the deprecated `init.kaiming_normal` (a FutureWarning on each
    # fresh meta model; Python prints it once); `reduce=False` of trainer.py is written here as
    # its equivalent `reduction="none"`.
    warnings.filterwarnings("ignore", category=FutureWarning, message=".*kaiming_normal")
    torch.manual_seed(FLAGS.seed)
    train, meta = synthetic_batches(torch, FLAGS.batch_size, FLAGS.image_size, FLAGS.num_classes, FLAGS.seed)
    steps = OfficialSteps(torch, resnet, num_classes=FLAGS.num_classes, lr=FLAGS.lr, train=train, meta=meta)
    print(f"official resnet.py {source} (commit {official_revision(FLAGS.official_repo, FLAGS.official_rev)}); "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    timed = {"torch_plain": steps.plain_step, "torch_meta": steps.meta_step}
    labels = {"torch_plain": "official plain CE step", "torch_meta": "official meta step (trainer.py loop)"}
    if FLAGS.with_ours:
        timed.update(our_steps())
        labels.update(ours_plain="our plain CE step (Keras)", ours_meta="our default meta step (exact)")
    medians = time_interleaved(timed, warmup=FLAGS.warmup, rounds=FLAGS.steps)
    for name, median in medians.items():
        framework = "torch" if name.startswith("torch") else "tf"
        print(f"resnet32 batch {FLAGS.batch_size} {framework:5s} {labels[name]:40s} {median:7.3f} s/step "
              f"(median of {FLAGS.steps})")
    for name, median in medians.items():
        print(f"time {name} = {median:.4f} s")
    if FLAGS.with_ours:
        print(f"ratio ours_plain/torch_plain = {medians['ours_plain'] / medians['torch_plain']:.2f}")
        print(f"ratio ours_meta/torch_meta = {medians['ours_meta'] / medians['torch_meta']:.2f}")
    print(f"ratio torch_meta/torch_plain = {medians['torch_meta'] / medians['torch_plain']:.2f}")


def our_steps() -> dict:
    """This project's plain and default meta steps as callables (ResNet-32, same batch size),
    each compiled as a run's --jit_compile=auto would; a call returns when its step is done."""
    import tensorflow as tf

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    from benchmarks import step_benchmark as sb
    from rmwnet_tf.train import resolve_jit

    shape = (FLAGS.image_size, FLAGS.image_size, 3)
    batch = sb.synthetic_batch(FLAGS.batch_size, shape, FLAGS.num_classes, seed=FLAGS.seed)
    steps = {}
    for name, mode in (("ours_plain", "plain"), ("ours_meta", "exact")):
        variant = sb.VARIANTS_BY_MODE[mode]
        jit = resolve_jit("auto", tf.distribute.get_strategy(), variant.uses_meta, variant.meta_every)
        step = sb.build_step(variant, model_name="resnet32", batch_size=FLAGS.batch_size, input_shape=shape,
                             num_classes=FLAGS.num_classes, jit_compile=jit)
        steps[name] = lambda step=step: float(step(batch)["train/loss"])
    return steps


if __name__ == "__main__":
    app.run(main)
