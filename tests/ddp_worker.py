"""Worker for tests/test_distributed.py: run every distributed-capable method on a toy problem, write metrics.

Single process:  python tests/ddp_worker.py OUT.json
Two processes:   python -m torch.distributed.run --nproc_per_node 2 tests/ddp_worker.py OUT.json
"""

import json
import sys

import torch
import torch.distributed as dist

torch.set_num_threads(1)


def main(out: str, methods: list[str] | None) -> None:
    import unlearnkit
    from unlearnkit.distributed import init_from_env, is_main_process
    from unlearnkit.testing import toy_problem
    from unlearnkit.training import evaluate_accuracy

    # The original model is trained before the process group exists, so both launches start from the same weights.
    prob = toy_problem(seed=0)
    init_from_env()
    # Sharded evaluation: gathered signals equal a plain full pass, in example order.
    from unlearnkit.evaluation import compute_signals
    from unlearnkit.training import predict_logits

    sig = compute_signals(prob.model, prob.train, "train")
    full = predict_logits(prob.model, prob.train)
    signals_diff = float((torch.from_numpy(sig.logits) - full).abs().max())
    labels_match = bool((torch.from_numpy(sig.labels) == prob.train.y).all()) and len(sig.labels) == len(prob.train)
    names = methods or [m for m in unlearnkit.list_methods() if unlearnkit.get_method(m).supports_distributed]
    results = {}
    for name in names:
        spec = unlearnkit.get_method(name)
        ld = prob.loaders() if "class" in spec.supported_requests else prob.loaders(
            forget_idx=torch.arange(0, len(prob.train), 10))
        res = unlearnkit.unlearn(prob.model, forget=ld["forget"], retain=ld["retain"], val=ld["val"],
                                 forget_classes=ld["forget_classes"], num_classes=ld["num_classes"],
                                 config=spec.config_cls(seed=0))
        flat = torch.cat([t.detach().float().flatten() for t in res.model.state_dict().values()])
        identical = True
        if dist.is_initialized():
            other = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
            dist.all_gather(other, flat)
            identical = all(torch.equal(other[0], o) for o in other)
        results[name] = {
            "forget_acc": evaluate_accuracy(res.model, ld["forget"].dataset),
            "retain_acc": evaluate_accuracy(res.model, ld["retain"].dataset),
            "val_acc": evaluate_accuracy(res.model, prob.val),
            "identical_across_ranks": identical,
            "weights": flat.tolist(),
        }
    world = dist.get_world_size() if dist.is_initialized() else 1
    results["_signals"] = {"max_abs_diff": signals_diff, "labels_match": labels_match, "world_size": world}
    if is_main_process():
        with open(out, "w") as f:
            json.dump(results, f)
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2].split(",") if len(sys.argv) > 2 else None)
