"""LongRoPE2's factor search on the tiny Llama in torch, driven from Python through ask/tell.

    python3 examples/python/longrope2_search.py --evaluations 64 --seed 0 --json out.json \
        [--resume search.json] [--checkpoint search.json] [--config-out config.json]

Fitness: needle-driven perplexity (LongRoPE2 sec. 3.2): needle documents of --length tokens built
by ropescale.make_needle_documents from TinyStories text (byte tokens), scored on the answer
tokens only (ropescale.answer_nll), exp of the mean over the documents (ropescale.perplexity).

Distributed (torch.distributed, gloo on CPU; NCCL needs no change):
    python3 -m torch.distributed.run --nproc_per_node=2 --redirects 2 --tee 2 \
        examples/python/longrope2_search.py --evaluations 64 --json out.json
(torch 1.13 on Python 3.11 needs --redirects 2 --tee 2.) Rank 0 asks and checkpoints; the batch's
genomes are broadcast, each rank evaluates its share on its own model replica, the losses are
gathered on rank 0 and told. A rank that raises stops the job with that rank's error; the last
checkpoint is the one written at the previous iteration boundary.
"""
import argparse
import json
import os
import pathlib
import sys
import time

import numpy as np
import torch

import ropescale

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from tiny_llama import TinyLlama  # noqa: E402

DATA = HERE.parent / "data"


def byte_tokens(text):
    return list(text.encode("utf-8"))


def needle_documents(length, count, seed):
    haystack = byte_tokens((DATA / "tinystories-valid-prefix.txt").read_text())
    template = {
        "preamble": byte_tokens("Remember the pass key. "),
        "key": byte_tokens("Spot"),
        "needle_head": byte_tokens(" The pass key of "),
        "needle_middle": byte_tokens(" is "),
        "needle_tail": byte_tokens(". "),
        "question_head": byte_tokens(" What is the pass key of "),
        "question_tail": byte_tokens("?"),
        "answer_head": byte_tokens(" The pass key of "),
        "answer_tail": byte_tokens(" is "),
    }
    digits = [ord(str(d)) for d in range(10)]
    return ropescale.make_needle_documents(haystack, template, digits, length=length,
                                           count=count, seed=seed)


class Fitness:
    def __init__(self, model_dir, length, documents, seed):
        self.model = TinyLlama.load(model_dir)
        self.spec = ropescale.load_hf_config(pathlib.Path(model_dir) / "config.json").spec
        self.docs = needle_documents(length, documents, seed)

    def __call__(self, factor_table):
        table = ropescale.Table(self.spec, factor_table, "half_split")
        losses = []
        with torch.no_grad():
            for d in self.docs:
                logits = self.model(torch.from_numpy(d["tokens"].astype(np.int64)), table)
                losses.append(ropescale.answer_nll(logits.double().numpy(), d["tokens"],
                                                   d["answer_mask"]))
        return ropescale.perplexity(losses)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--evaluations", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", required=True, help="summary output")
    ap.add_argument("--resume", help="checkpoint to continue from")
    ap.add_argument("--checkpoint", default=None, help="checkpoint written after every batch")
    ap.add_argument("--config-out", default=None, help="HF config.json of the best table")
    ap.add_argument("--model", default=str(DATA / "tiny-llama"))
    ap.add_argument("--length", type=int, default=512, help="needle document tokens (target)")
    ap.add_argument("--documents", type=int, default=2)
    ap.add_argument("--stop-after", type=int, default=0,
                    help="stop after this many batches, as if killed (tests resume)")
    ap.add_argument("--fail-rank-at", default=None, metavar="RANK:ID",
                    help="rank RANK raises when it evaluates candidate ID or a later one "
                         "(tests how a failing rank stops the job)")
    args = ap.parse_args()

    distributed = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
    rank, world = 0, 1
    if distributed:
        import torch.distributed as dist

        dist.init_process_group("gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(1 if distributed else torch.get_num_threads())

    fitness = Fitness(args.model, args.length, args.documents, args.seed)
    space = ropescale.SearchSpace.longrope2(fitness.spec, args.length)
    population = 16
    children = 8
    iterations = max(0, (args.evaluations - population) // children)
    params = ropescale.SearchParams(population=population, parents=8, mutations=children // 2,
                                    crossovers=children // 2, iterations=iterations,
                                    seed=args.seed)
    search = ropescale.EvolutionSearch(space, params)
    if args.resume and pathlib.Path(args.resume).exists():
        search.restore(ropescale.load_search_checkpoint(args.resume))
    else:
        search.start()
    checkpoint = args.checkpoint or args.resume
    start = time.time()
    batches = 0
    while True:
        if args.stop_after and batches == args.stop_after:
            break
        batches += 1
        batch = search.ask() if rank == 0 else None
        if distributed:
            box = [None if batch is None else [(c.id, c.genome.critical_pair, list(c.genome.steps))
                                               for c in batch]]
            dist.broadcast_object_list(box, src=0)
            genomes = box[0]
        else:
            genomes = [(c.id, c.genome.critical_pair, list(c.genome.steps)) for c in batch]
        if not genomes:
            break
        mine = genomes[rank::world]
        results, error = [], None
        try:
            for cid, c, steps in mine:
                if args.fail_rank_at:
                    fail_rank, fail_id = map(int, args.fail_rank_at.split(":"))
                    if rank == fail_rank and cid >= fail_id:
                        raise RuntimeError(f"injected failure at candidate {cid}")
                g = ropescale.Genome()
                g.critical_pair, g.steps = c, steps
                results.append((cid, fitness(space.genome_table(g))))
        except Exception as e:  # reported to rank 0, which stops the job with it
            error = f"rank {rank}: {type(e).__name__}: {e}"
        if distributed:
            gathered = [None] * world
            dist.all_gather_object(gathered, (results, error))
        else:
            gathered = [(results, error)]
        errors = [e for _, e in gathered if e]
        if errors:
            raise SystemExit(errors[0])
        if rank == 0:
            answers = [r for part, _ in gathered for r in part]
            search.tell([i for i, _ in answers], [loss for _, loss in answers])
            if checkpoint:
                search.state().save(checkpoint)
    seconds = time.time() - start
    if rank == 0 and args.stop_after and not search.finished:
        print(f"stopped after {batches} batches; the checkpoint is {checkpoint}")
    elif rank == 0:
        r = search.result()
        summary = {
            "best_loss": r.best_loss,
            "critical_pair": r.critical_pair,
            "factors": r.table.factors.tolist(),
            "evaluations": r.evaluations,
            "seconds": seconds,
            "processes": world,
            "stop_reason": r.stop_reason,
        }
        pathlib.Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
        if args.config_out:
            pathlib.Path(args.config_out).write_text(json.dumps(r.to_hf_config(), indent=1) + "\n")
        print(f"best perplexity {r.best_loss:.4f} at c = {r.critical_pair} after "
              f"{r.evaluations} evaluations, {seconds:.1f} s on {world} process(es)")
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
