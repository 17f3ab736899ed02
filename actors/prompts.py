"""Prompts as the engines see them: the tokenizer a model directory brings (with the tiny model's ChatML template
for one that has none) and one problem rendered through its chat template. Used by the rollout engines, SFT,
the evaluator and the benchmarks alike, so every stage prompts the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from actors.records import Problem

# Qwen-style ChatML template; the assistant turn holds `<think>...</think>` reasoning then the answer.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if tok.chat_template is None:
        tok.chat_template = CHAT_TEMPLATE
    return tok


def build_prompt(tokenizer: Any, problem: Problem, instruction: str = "") -> str:
    """The chat-formatted prompt text (generation prompt included) for one problem."""
    content = f"{problem.prompt}\n{instruction}".strip() if instruction else problem.prompt
    return tokenizer.apply_chat_template([{"role": "user", "content": content}],
                                         tokenize=False, add_generation_prompt=True)
