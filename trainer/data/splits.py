"""Which problems a run trains on, evaluates on and probes with: the configured files, or the toy tasks split
three ways (train / probe sets / held-out, disjoint for every command). Used by `ssp rl`, `ssp sft`, the
Spectrum stage's probe and the pipeline."""

from __future__ import annotations

import random

from trainer.data.problems import DataError, Problem


def toy_split(conf) -> tuple[list[Problem], list[Problem]]:
    """The toy tasks' train and held-out problems (before the probe sets are carved out of train)."""
    from trainer.data import toy_tasks
    from trainer.data.problems import from_record

    tr, he = toy_tasks.split(toy_tasks.generate(conf.data.toy), seed=conf.data.toy.seed)
    return [from_record(r, "toy", "toy") for r in tr], [from_record(r, "toy", "toy") for r in he]


def load_problems_for(conf) -> tuple[list[Problem], list[Problem]]:
    """Train and held-out problems: the configured files, or the toy tasks' split (whose train part gives up
    the Spectrum stage's probe sets: train / probe / held-out are disjoint, for every command)."""
    from trainer.data.sources import load_all

    if conf.data.train:
        train, held = load_all(conf.data.train), load_all(conf.data.eval)
        return train, held
    train, held = toy_split(conf)
    return carve_probe(conf, train)[0], held


def carve_probe(conf, train: list[Problem]) -> tuple[list[Problem], dict[str, list[Problem]]]:
    """Toy data: (train without the probe problems, {subdomain: probe problems}), `probe_problems` per
    subdomain (at most a quarter of its training problems) taken from the training split, spread over
    levels, seeded. With probe files: (train, {})."""
    s = conf.spectrum
    if s.probe_files or conf.data.train:
        return train, {}
    sets: dict[str, list[Problem]] = {}
    for sub in s.probe_subdomains:
        by_level: dict = {}
        for p in sorted((p for p in train if p.subdomain == sub), key=lambda p: p.id):
            by_level.setdefault(p.level, []).append(p)
        if not by_level:
            raise DataError(f"spectrum.probe_subdomains: no training problems in toy subdomain {sub!r} to probe "
                            f"(data.toy.subdomains: {list(conf.data.toy.subdomains)}; or give spectrum.probe_files)")
        rng = random.Random(s.probe_seed)
        for ps in by_level.values():
            rng.shuffle(ps)
        levels = sorted(by_level, key=str)
        picked = [by_level[lv][i] for i in range(max(map(len, by_level.values()))) for lv in levels
                  if i < len(by_level[lv])]  # round robin over levels
        sets[sub] = picked[: min(s.probe_problems, len(picked) // 4)]  # never more than a quarter of train
        if not sets[sub]:
            raise DataError(f"spectrum.probe_subdomains: toy subdomain {sub!r} has {len(picked)} training problems, "
                            "too few to give a quarter to a probe set (raise data.toy.per_cell)")
    taken = {p.id for ps in sets.values() for p in ps}
    return [p for p in train if p.id not in taken], sets


def probe_sets(conf) -> dict[str, list[Problem]]:
    """{subdomain: probe problems}, disjoint from the training and held-out problems: carved from the toy
    training split, or read from `spectrum.probe_files` (problems whose text is a train or held-out problem's
    are dropped)."""
    from trainer.data.sources import load_source

    s = conf.spectrum
    if not s.probe_files:
        if conf.data.train:
            raise DataError("spectrum.probe_files: needed when data.train is set (probe sets for your own data)")
        return carve_probe(conf, toy_split(conf)[0])[1]
    train, held = load_problems_for(conf)
    pool = [p for f in s.probe_files for p in load_source(f)]
    seen = {" ".join(p.prompt.lower().split()) for p in train + held}
    out = {}
    for sub in s.probe_subdomains:
        cands = [p for p in pool if p.subdomain == sub and " ".join(p.prompt.lower().split()) not in seen]
        if not cands:
            raise DataError(f"spectrum.probe_subdomains: no probe problems for subdomain '{sub}' in "
                            f"spectrum.probe_files {s.probe_files} (outside the train and held-out sets)")
        random.Random(s.probe_seed).shuffle(cands)
        out[sub] = cands[: s.probe_problems]
    return out
