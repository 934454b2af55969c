"""``hybridnas train``: retrain one architecture at full fidelity and report
its test accuracy (how a user confirms that a searched architecture holds up).

    hybridnas train exports/my-run/trial_12 --dataset fashion-mnist --epochs 30
    hybridnas train coatnet_0 --dataset cifar10 --data-dir ~/data/cifar --resolution 32
    hybridnas train my_spec.yaml --dataset digits --epochs 2 --resolution 16 --out /tmp/t

The output folder holds ``checkpoint/last.pt`` (model, optimizer, schedule,
epoch; ``--resume`` continues from it), the final weights as an exported
model (``spec.yaml``, ``model.safetensors``, ``meta.json``; load them with
``hybridnas.load(DIR)``) and ``metrics.json`` (per-epoch history and the test
metrics).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys

__all__ = ["register", "cmd_train"]


def register(sub) -> None:
    p = sub.add_parser(
        "train", help="retrain an architecture at full fidelity and report test accuracy",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("arch", metavar="SPEC_OR_EXPORT",
                   help="a named architecture (`hybridnas models`), a spec YAML/JSON file, or an "
                        "exported model folder containing spec.yaml")
    p.add_argument("--dataset", required=True,
                   help="dataset name: fashion-mnist, mnist, cifar10, imagefolder, digits, synthetic, ...")
    p.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    p.add_argument("--resolution", type=int, default=None,
                   help="input resolution (default: the export's, else the dataset's own)")
    p.add_argument("--batch-size", type=int, default=128, help="batch size (default 128)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate (default 1e-3)")
    p.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay (default 0.05)")
    p.add_argument("--warmup-epochs", type=float, default=1.0,
                   help="linear warm-up before the cosine schedule (default 1)")
    p.add_argument("--label-smoothing", type=float, default=0.1, help="label smoothing (default 0.1)")
    p.add_argument("--drop-path", type=float, default=0.0, help="stochastic depth rate (default 0)")
    p.add_argument("--data-dir", default=None, help="where the dataset's files are")
    p.add_argument("--subset", type=float, default=None,
                   help="train on a stratified subset: a count (>1) or a fraction (<=1)")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of the training set held out for validation (default 0.1)")
    p.add_argument("--out", default=None,
                   help="output folder (default results/train/<arch>-<dataset>)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint/last.pt")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1 ...")
    p.add_argument("--amp", default="auto", choices=("auto", "bf16", "fp16", "off"),
                   help="mixed precision on CUDA (default auto: bf16 where supported, else fp16)")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format on CUDA")
    p.add_argument("--max-batches-per-epoch", type=int, default=None,
                   help="cap the batches per epoch (quick checks)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's own choice; use 1 on a busy machine)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, split and data order")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar or in-epoch progress lines (one line per epoch only)")
    p.set_defaults(func=cmd_train)


def _read_meta(arch: str) -> dict:
    path = os.path.join(arch, "meta.json")
    if os.path.isdir(arch) and os.path.isfile(path):
        from ._io import load_data_file
        from .errors import UserError

        try:  # an export folder may come from anywhere: read within the limits
            meta = load_data_file(path)
        except UserError:
            return {}
        return meta if isinstance(meta, dict) else {}
    return {}


def _default_out(arch: str, spec, dataset: str) -> str:
    base = spec.name or os.path.basename(os.path.normpath(arch))
    base = re.sub(r"\.(ya?ml|json)$", "", base) or spec.arch_id
    return os.path.join("results", "train", re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{base}-{dataset}"))


def cmd_train(args: argparse.Namespace) -> int:
    from . import get_spec
    from .errors import UserError

    if args.epochs < 1 or args.batch_size < 1:
        raise UserError(f"--epochs and --batch-size must be >= 1 "
                        f"(got {args.epochs}, {args.batch_size})")
    if os.path.sep in args.arch or args.arch.endswith((".yaml", ".yml", ".json")):
        if not os.path.exists(args.arch):
            raise UserError(f"{args.arch}: no such spec file or export folder")
        if os.path.isdir(args.arch) and not os.path.isfile(os.path.join(args.arch, "spec.yaml")):
            raise UserError(f"{args.arch}: folder has no spec.yaml (not an exported model)")
    spec = get_spec(args.arch)
    meta = _read_meta(args.arch)
    resolution = args.resolution or meta.get("resolution")
    subset = None
    if args.subset is not None:
        subset = args.subset if args.subset <= 1 else int(args.subset)

    import torch

    if args.threads:
        torch.set_num_threads(max(1, args.threads))
    from . import build_model
    from .data import load_dataset
    from .training import CHECKPOINT_NAME, TrainingError, evaluate, fit
    from .training_progress import ProgressBar, epoch_progress, format_seconds

    bundle = load_dataset(args.dataset, data_dir=args.data_dir, resolution=resolution,
                          subset=subset, seed=args.seed, val_fraction=args.val_fraction)
    if spec.dims == 2 and len(bundle.input_shape) == 3:
        spec.validate(tuple(bundle.input_shape[1:]))  # before any training
    out = args.out or _default_out(args.arch, spec, args.dataset)
    ckpt_dir = os.path.join(out, "checkpoint")
    if os.path.exists(os.path.join(ckpt_dir, CHECKPOINT_NAME)) and not args.resume:
        raise UserError(f"{out} already holds a training checkpoint: pass --resume to continue it "
                        f"or choose another --out")
    torch.manual_seed(args.seed)
    model = build_model(spec, num_classes=bundle.num_outputs, in_chans=bundle.in_chans,
                        drop_path_rate=args.drop_path)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"train {spec.name or args.arch} ({spec.pattern}, {n_params / 1e6:.3f} M params) on "
          f"{bundle.summary()}; {args.epochs} epochs, batch {args.batch_size}, lr {args.lr:g}",
          flush=True)

    epoch_seconds: list[float] = []

    def progress(r) -> None:
        vals = "  ".join(f"{k} {v:.4f}" for k, v in r.val_metrics.items())
        epoch_seconds.append(r.seconds)
        left = r.max_epochs - r.epoch
        eta = (f"  ETA {format_seconds(left * sum(epoch_seconds) / len(epoch_seconds))}"
               if left else "")
        print(f"epoch {r.epoch:>3}/{r.max_epochs}  train_loss {r.train_loss:.4f}  {vals}  "
              f"lr {r.lr:.2e}  {r.seconds:.1f}s  {r.images_per_sec:.0f} img/s{eta}", flush=True)

    # a bar on a terminal, a line every ~10 s in a log, nothing with --quiet
    on_batch = epoch_progress(quiet=args.quiet, stream=sys.stderr)
    try:
        result = fit(model, bundle, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                     weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
                     label_smoothing=args.label_smoothing, device=args.device, amp=args.amp,
                     on_epoch=progress, checkpoint_dir=ckpt_dir, resume=args.resume,
                     max_batches_per_epoch=args.max_batches_per_epoch, seed=args.seed,
                     channels_last=args.channels_last, log=print, on_batch=on_batch)
    except TrainingError as e:
        raise UserError(f"{e} (the last finished epoch is in {ckpt_dir})") from None
    except KeyboardInterrupt:
        print(f"stopped; continue with: hybridnas train {args.arch} --dataset {args.dataset} "
              f"--out {out} --resume", file=sys.stderr)
        raise
    finally:
        if isinstance(on_batch, ProgressBar):
            on_batch.close()
    if result.resumed_from:
        print(f"resumed from epoch {result.resumed_from}")
    test = evaluate(model, bundle.test, bundle.task, result.device, prefix="test_",
                    amp=args.amp) if bundle.test is not None and len(bundle.test) else {}

    from .export import save_checkpoint

    save_checkpoint(out, model, spec, {
        "num_classes": bundle.num_outputs, "in_chans": bundle.in_chans,
        "resolution": bundle.resolution, "dataset": args.dataset, "epochs": result.epochs,
        "metric_name": result.metric_name, "metric": result.best_metric,
        "full_fidelity": True, "test_metrics": test, "mean": bundle.mean, "std": bundle.std,
        "seed": args.seed, "source": "hybridnas train",
    })
    summary = {
        "arch": args.arch, "arch_id": spec.arch_id, "dataset": args.dataset,
        "resolution": bundle.resolution, "epochs": result.epochs, "device": result.device,
        "best_" + result.metric_name: result.best_metric, "best_epoch": result.best_epoch,
        "test": test, "history": [h.to_dict() for h in result.history],
        "settings": {k: v for k, v in vars(args).items() if k != "func"},
    }
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(summary, f, indent=2, default=str)
    tests = "  ".join(f"{k} {v:.4f}" for k, v in test.items())
    print(f"best {result.metric_name} {result.best_metric:.4f} (epoch {result.best_epoch}); "
          f"{tests} on {len(bundle.test)} test images")
    print(f"saved {out} (load with hybridnas.load({out!r}))")
    return 0
