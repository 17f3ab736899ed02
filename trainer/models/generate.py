"""`ssp generate`: answers to a few toy problems from `model.path`, through vLLM, as a table."""

from __future__ import annotations

from actors.engine import make_llm, sampling_params
from actors.prompts import load_tokenizer
from trainer.data import toy_tasks
from trainer.data.problems import Problem, build_prompt, from_record
from trainer.models.ensure import ensure_model


def toy_problems(conf, n: int) -> list[Problem]:
    recs = toy_tasks.generate(conf.data.toy)
    step = max(1, len(recs) // n)
    return [from_record(r, "toy", "toy") for r in recs[::step][:n]]


def generate_demo(conf, n_problems: int = 8) -> list[str]:
    model = ensure_model(conf)
    tok = load_tokenizer(model)
    problems = toy_problems(conf, n_problems)
    prompts = [build_prompt(tok, p, conf.data.instruction) for p in problems]
    llm = make_llm(model, conf.engine)
    outs = llm.generate(prompts, sampling_params(conf.sampling), use_tqdm=False)
    texts = [o.outputs[0].text for o in outs]
    print(f"\n{'problem':34s} | {'gold':>6s} | generation (vLLM, {model})")
    print("-" * 100)
    for p, o in zip(problems, outs):
        c = o.outputs[0]
        gold = p.answer if p.kind == "math" else "tests"
        print(f"{p.prompt[:34]:34s} | {gold:>6s} | {c.text[:50]!r} [{len(c.token_ids)} tok, {c.finish_reason}]")
    return texts
