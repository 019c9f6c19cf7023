"""Search strategies over the space: random sampling and aging evolution, under a chip budget
(cores, synaptic memory, synaptic operations), the Pareto front of proxy score against estimated
cores and synaptic operations, and the brief training of the best-ranked candidates
(``train_candidates``).

Candidates are admitted from their resource estimate before any scoring, by ``Budget.assess``:
the chip-fit rule that export enforces (``neurokd.metrics.resources.chip_fit``: fan-in per neuron,
synaptic memory per core, cores per chip), then the user's budget; every candidate the search
returns passes the export's chip-fit check. Only the proxy that ranks is scored unless more are
asked for (``score_proxies``): a probe computes only what its proxies need
(``neurokd.nas.proxies.register_proxy``), so ranking by ``synops`` runs one forward pass per probe
and no backward pass.
Scoring runs in ``workers`` processes (one torch thread each, as in this process with one worker:
the thread count changes the scores' last digits), or as tasks on an existing Ray
cluster (``ray_address``, the optional ``ray`` extra), by the package's scheduler
(``neurokd.parallel.Workers``); the data batches are encoded once, with as many trailing zero
frames as the deepest network of the space has spiking layers, and shared with the workers.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from tqdm.auto import tqdm

from neurokd.errors import NeurokdError
from neurokd.hardware import HardwareProfile, load_profile
from neurokd.models.spec import ArchSpec, spec_from_dict
from neurokd.nas.proxies import PROXIES, score_arch
from neurokd.metrics.resources import Budget
from neurokd.nas.space import SearchSpace, arch_key, describe
from neurokd.parallel import Workers

Batches = List[Tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Candidate:
    spec: ArchSpec
    resources: Dict[str, Any]
    scores: Dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def row(self, proxy: str) -> Dict[str, Any]:
        return {"arch": describe(self.spec), "score": self.scores.get(proxy, float("nan")),
                "cores": self.resources["cores"], "neurons": self.resources["neurons"],
                "synapses": self.resources["synapses"], "params": self.resources["params"],
                "memory_bytes": self.resources["memory_bytes"],
                "synops_upper": self.resources["synops"],
                "energy_upper_j": self.resources.get("energy_upper_j"),
                **{f"proxy_{k}": v for k, v in self.scores.items()},
                "seconds": self.seconds}


# ---------------------------------------------------------------- scoring (in worker processes)
_WORKER: Dict[str, Any] = {}


def _init_worker(batches: Batches, profile_name: str, seeds: Sequence[int],
                 proxies: Sequence[str], tau_grad: Optional[float] = None,
                 device: str = "cpu") -> None:
    """What every scoring process (or Ray task) holds: the batches (on ``device``), the profile,
    the seeds, the proxies and the surrogate width."""
    dev = torch.device(device)
    _WORKER.update(batches=[(x.to(dev), y) for x, y in batches], profile=load_profile(profile_name),
                   seeds=list(seeds), proxies=list(proxies), tau_grad=tau_grad, device=dev)


def _score(spec_data: Dict[str, Any]) -> Tuple[Dict[str, float], float]:
    t0 = time.perf_counter()
    spec = spec_from_dict(spec_data)
    scores = score_arch(spec, _WORKER["profile"], _WORKER["batches"], _WORKER["seeds"],
                        _WORKER["proxies"], _WORKER["tau_grad"], _WORKER["device"])
    return scores, time.perf_counter() - t0


class Scorer:
    """Scores candidates in ``workers`` processes (or in this one when ``workers`` is 1), or, with
    ``ray_address``, as one-CPU tasks on that Ray cluster (``workers`` is then its CPU count),
    by ``neurokd.parallel.Workers``; one torch thread each. ``tau_grad``: the surrogate width of
    the probes (default: each spec neuron's); ``device``: where the probes run (a GPU scores in
    this process only: CUDA does not survive a fork)."""

    def __init__(self, batches: Batches, profile: HardwareProfile, seeds: Sequence[int],
                 proxies: Sequence[str], workers: int = 1, ray_address: Optional[str] = None,
                 tau_grad: Optional[float] = None, device: str = "cpu") -> None:
        for name in proxies:
            PROXIES.get(name)
        if torch.device(device).type != "cpu" and (int(workers) > 1 or ray_address):
            raise NeurokdError(f"--device {device} scores in this process; use --workers 1 "
                               "(and no --ray)")
        self.args = (batches, profile.name, list(seeds), list(proxies), tau_grad, str(device))
        # Ray runs a task again (three times) where its worker was lost, as it does by default
        self.pool = Workers(max(1, int(workers)), ray_address,
                            in_process=not ray_address and int(workers) <= 1,
                            initializer=_init_worker, initargs=self.args, ray_retries=3)
        self.workers = self.pool.slots

    def score(self, candidates: Sequence[Candidate]) -> None:
        """Score ``candidates`` (their ``scores`` and ``seconds``), in parallel."""
        results = self.pool.map(_score, [c.spec.model_dump() for c in candidates])
        for c, (scores, seconds) in zip(candidates, results):
            c.scores, c.seconds = scores, seconds

    def close(self, abort: bool = False) -> None:
        """Release the workers: let them exit after a search, or (``abort``, on an error or a
        signal) end them at once, so that nothing outlives the search."""
        self.pool.close(abort=abort)

    def __enter__(self) -> "Scorer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(abort=exc_type is not None)


# ---------------------------------------------------------------- strategies
def sample_feasible(space: SearchSpace, rng: random.Random, input_shape, num_classes: int,
                    profile: HardwareProfile, budget: Budget, seen: set, tries: int = 2000) -> Candidate:
    """A new candidate drawn from ``space`` that ``budget.assess`` admits (it fits one chip and
    the budget)."""
    smallest: Optional[Dict[str, Any]] = None
    why = ""  # why the smallest was refused
    repeats = 0  # draws that were feasible but already taken
    for _ in range(tries):
        spec = space.sample(rng, input_shape, num_classes)
        key = arch_key(spec)
        res, problem = budget.assess(spec, profile, space.window(spec))
        if problem is None:
            if key in seen:
                repeats += 1
                continue
            seen.add(key)
            return Candidate(spec, res)
        if smallest is None or (res["cores"], res["synops"]) < (smallest["cores"], smallest["synops"]):
            smallest, why = res, problem
    if repeats:
        raise NeurokdError(f"the search space holds only {len(seen)} distinct architectures within "
                           "the budget; ask for fewer candidates or widen the space")
    raise NeurokdError(f"no architecture in the search space meets the budget (max cores "
                       f"{budget.max_cores}, max memory {budget.max_memory_bytes}, max synops "
                       f"{budget.max_synops}, max energy {budget.max_energy_j} J) and fits one "
                       f"{profile.name} chip; the smallest "
                       f"found needs {smallest['cores']} cores, {smallest['memory_bytes']} bytes "
                       f"and {smallest['synops']:.4g} synaptic operations ({why})")


def random_search(space: SearchSpace, input_shape, num_classes: int, profile: HardwareProfile,
                  budget: Budget, scorer: Scorer, candidates: int, seed: int = 0,
                  progress: bool = True, chunk: int = 16) -> List[Candidate]:
    rng = random.Random(seed)
    seen: set = set()
    pool = [sample_feasible(space, rng, input_shape, num_classes, profile, budget, seen)
            for _ in range(candidates)]
    bar = tqdm(total=len(pool), desc="search (random)", unit="arch", disable=not progress, leave=False)
    for i in range(0, len(pool), chunk):
        scorer.score(pool[i:i + chunk])
        bar.update(len(pool[i:i + chunk]))
    bar.close()
    return pool


ROUND_SIZE = 8


def aging_evolution(space: SearchSpace, input_shape, num_classes: int, profile: HardwareProfile,
                    budget: Budget, scorer: Scorer, candidates: int, proxy: str, seed: int = 0,
                    population: int = 20, sample_size: int = 5, progress: bool = True,
                    round_size: int = ROUND_SIZE) -> List[Candidate]:
    """Real et al.'s regularized evolution: a population of ``population``; each child mutates the
    best of ``sample_size`` random members and replaces the oldest. Children are made and scored
    in rounds of ``round_size`` (the parents of a round are drawn from the population as it stood
    before it), so that the workers score a round in parallel. The round size is fixed, not the
    worker count, so the search is the same for any number of workers (or a Ray cluster)."""
    if round_size <= 0:
        raise NeurokdError(f"round_size must be positive, got {round_size}")
    rng = random.Random(seed)
    seen: set = set()
    history: List[Candidate] = []
    bar = tqdm(total=candidates, desc="search (evolution)", unit="arch", disable=not progress,
               leave=False)
    first = [sample_feasible(space, rng, input_shape, num_classes, profile, budget, seen)
             for _ in range(min(population, candidates))]
    scorer.score(first)
    history.extend(first)
    bar.update(len(first))
    alive = deque(first)
    while len(history) < candidates:
        children = []
        for _ in range(min(round_size, candidates - len(history))):
            parent = max(rng.sample(list(alive), min(sample_size, len(alive))),
                         key=lambda c: c.scores[proxy])
            child = None
            for _ in range(50):
                spec = space.mutate(parent.spec, rng)
                key = arch_key(spec)
                if key in seen:
                    continue
                res, problem = budget.assess(spec, profile, space.window(spec))
                if problem is None:
                    seen.add(key)
                    child = Candidate(spec, res)
                    break
            children.append(child or sample_feasible(space, rng, input_shape, num_classes, profile,
                                               budget, seen))
        scorer.score(children)
        for child in children:
            history.append(child)
            alive.append(child)
            if len(alive) > population:
                alive.popleft()
        bar.update(len(children))
    bar.close()
    return history


def pareto_front(cands: Sequence[Candidate], proxy: str) -> List[Candidate]:
    """Candidates no other beats on all four of: a higher ``proxy`` score, fewer estimated cores,
    fewer synaptic operations per inference (the resource model's upper bound, ``resources
    ["synops"]``, the number ``Budget.max_synops`` bounds), less energy per inference at that
    bound (``resources["energy_upper_j"]``, the digital model's, which ``Budget.max_energy_j``
    bounds). One candidate dominates another when it is at least as good on all four and better
    on one. With a proxy that grows with size
    (``synops``, ``params``), the front is the trade-off between the score and the chip's cost;
    ``pareto.png`` plots it."""
    def key(c: Candidate) -> Tuple[float, float, float, float]:
        score = float(c.scores[proxy])
        return (math.inf if math.isnan(score) else -score, float(c.resources["cores"]),
                float(c.resources["synops"]), float(c.resources.get("energy_upper_j") or 0.0))

    keys = [key(c) for c in cands]
    front = [c for c, kc in zip(cands, keys)
             if not any(all(o <= k for o, k in zip(ko, kc)) and ko != kc for ko in keys)]
    return sorted(front, key=lambda c: (c.resources["cores"], c.resources["synops"],
                                        -c.scores[proxy]))


STRATEGIES: Dict[str, Callable[..., List[Candidate]]] = {"random": random_search,
                                                          "evolution": aging_evolution}


def encoded_batches_for_search(ds, encoder: str, space: SearchSpace, batches: int, batch_size: int,
                               seed: int) -> Batches:
    """``batches`` training batches, drawn by ``seed``, encoded once for every candidate: spike or
    current windows for integrate-and-fire candidates; for sigma-delta candidates the frames on
    the encoder's graded input grid (what the first layer's messages carry), no time axis."""
    from neurokd.convert.sdnn import input_levels, on_input_grid
    from neurokd.data.encoders import encode_window, get_encoder

    enc = get_encoder(encoder)
    if space.neuron == "sdnn":
        input_levels(encoder)  # a binary encoder is refused before any draw
    need = batches * batch_size
    if need > len(ds.train):
        raise NeurokdError(f"{batches} batches of {batch_size} need {need} training samples; the "
                           f"data has {len(ds.train)}")
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(ds.train), generator=gen)[:need].numpy()
    out = []
    for b in range(batches):
        idx = order[b * batch_size:(b + 1) * batch_size]
        x = torch.as_tensor(ds.train.x[idx], dtype=torch.float32)
        if space.neuron == "sdnn":
            x = on_input_grid(x, encoder)
        else:
            x = encode_window(x, enc, space.timesteps, space.max_spiking_layers, gen)
        out.append((x, torch.as_tensor(ds.train.y[idx])))
    return out


def run_search(ds, space: SearchSpace, profile: HardwareProfile, budget: Budget, proxy: str,
               strategy: str = "evolution", candidates: int = 100, workers: int = 1,
               encoder: str = "rate", seeds: Sequence[int] = (0, 1), batches: int = 2,
               batch_size: int = 16, seed: int = 0, progress: bool = True,
               ray_address: Optional[str] = None, score_proxies: Optional[Sequence[str]] = None,
               tau_grad: Optional[float] = None, device: str = "cpu") -> Dict[str, Any]:
    """Search ``space`` for ``ds``; returns the scored candidates ranked by ``proxy``, the chosen
    spec, the Pareto front and timings. Every argument is checked before scoring starts. With
    ``ray_address``, scoring runs on that Ray cluster instead of local processes.
    ``score_proxies``: the proxies scored beside ``proxy`` (default none; ``PROXIES.names()``
    for all); ``tau_grad``: the surrogate width of the probes (default: the spec neuron's);
    ``device``: where the probes run."""
    PROXIES.get(proxy)
    scored = [proxy] + [p for p in (score_proxies or ()) if p != proxy]
    for name in scored:
        PROXIES.get(name)
    if tau_grad is not None and not tau_grad > 0:
        raise NeurokdError(f"the surrogate width tau_grad must be positive, got {tau_grad}")
    if strategy not in STRATEGIES:
        raise NeurokdError(f"unknown search strategy {strategy!r}; choose one of: "
                           f"{', '.join(STRATEGIES)}")
    if candidates <= 0 or workers <= 0 or batches <= 0 or batch_size <= 1 or not seeds:
        raise NeurokdError("candidates, workers and batches must be positive, batch size at least 2, "
                           "and at least one seed given")
    budget.check()
    if space.neuron == "sdnn":
        from neurokd.models.sigma_delta.net import rules

        rules(profile)  # a chip without sigma-delta neurons is refused before any scoring
    data = encoded_batches_for_search(ds, encoder, space, batches, batch_size, seed)
    # The budget is checked on a first draw, so that an impossible one fails before any scoring.
    sample_feasible(space, random.Random(seed), ds.input_shape, ds.num_classes, profile, budget, set())
    t0 = time.perf_counter()
    with Scorer(data, profile, seeds, scored, workers, ray_address, tau_grad, device) as scorer:
        kwargs = dict(seed=seed, progress=progress)
        if strategy == "evolution":
            kwargs["proxy"] = proxy
        cands = STRATEGIES[strategy](space, ds.input_shape, ds.num_classes, profile, budget, scorer,
                                     candidates, **kwargs)
    seconds = time.perf_counter() - t0
    ranked = sorted(cands, key=lambda c: c.scores[proxy], reverse=True)
    return {"ranked": ranked, "chosen": ranked[0], "front": pareto_front(cands, proxy),
            "seconds": seconds, "archs_per_second": len(cands) / seconds, "proxy": proxy,
            "strategy": strategy, "scored_proxies": scored}


# ---------------------------------------------------------------- brief training of the best
# (the training itself: ``neurokd.pipeline.train_candidates``)
def best_trained(trained: Sequence[Dict[str, Any]]) -> int:
    """Index of the best validation accuracy (the better proxy rank on a tie)."""
    if not trained:
        raise NeurokdError("no trained candidates to choose from")
    return max(range(len(trained)), key=lambda i: (trained[i]["val_accuracy"], -trained[i]["rank"]))
