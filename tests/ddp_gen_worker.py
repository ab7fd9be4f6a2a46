"""Worker for tests/test_distributed_generation.py: sfron and salun on the tiny generation problem, then FA.

Single process:  python tests/ddp_gen_worker.py OUT.json
Two processes:   python -m torch.distributed.run --nproc_per_node 2 tests/ddp_gen_worker.py OUT.json
"""

import json
import sys

import torch
import torch.distributed as dist

torch.set_num_threads(1)

N_SAMPLES = 200


def main(out: str) -> None:
    import unlearnkit
    from unlearnkit.diffusion import sample
    from unlearnkit.distributed import init_from_env, is_main_process
    from unlearnkit.evaluation.generation import forgetting_accuracy, judge_probs
    from unlearnkit.methods.base import config_for_task
    from unlearnkit.models import build_model
    from unlearnkit.testing import diffusion_toy_problem
    from unlearnkit.training import TrainRecipe, train

    # Models are trained before the process group exists, so both launches start from the same weights.
    prob = diffusion_toy_problem(seed=0, steps=150)
    torch.manual_seed(0)
    judge = build_model("cnn", (1, 8, 8), prob.num_classes)
    train(judge, prob.train, recipe=TrainRecipe(epochs=20, batch_size=16, optimizer="adam", lr=2e-3,
                                                weight_decay=0.0), seed=0)
    judge.eval()
    init_from_env()
    ld = prob.loaders()
    results = {}

    def fa(model: torch.nn.Module) -> float:
        x = sample(model, [prob.forget_class] * N_SAMPLES, schedule=prob.task.schedule, method="ddim", steps=10,
                   shape=(1, 8, 8), seed=123)
        return forgetting_accuracy(judge_probs(judge, x), prob.forget_class)

    results["original"] = {"fa": fa(prob.model)}
    for name, kw in (("sfron", dict(n_iters=12, batch_size=16)), ("salun", dict(n_iters=12, batch_size=16))):
        cfg = config_for_task(name, "generation", lr=3e-3, **kw)
        res = unlearnkit.unlearn(prob.model, forget=ld["forget"], retain=ld["retain"], num_classes=prob.num_classes,
                                 forget_classes=[prob.forget_class], config=cfg, task=prob.task)
        flat = torch.cat([t.detach().float().flatten() for t in res.model.state_dict().values()])
        identical = True
        if dist.is_initialized():
            other = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
            dist.all_gather(other, flat)
            identical = all(torch.equal(other[0], o) for o in other)
        results[name] = {"fa": fa(res.model), "identical_across_ranks": identical, "weights": flat.tolist()}
    results["_world_size"] = dist.get_world_size() if dist.is_initialized() else 1
    if is_main_process():
        with open(out, "w") as f:
            json.dump(results, f)
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
