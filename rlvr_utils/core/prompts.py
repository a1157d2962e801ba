"""Named prompt templates, rendered through the model's own chat template."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    system: str
    user: str  # formatted with {problem}
    chat: bool = True  # through the model's chat template; False: the text itself (models without one)


PROMPTS: dict[str, PromptTemplate] = {
    t.name: t
    for t in (
        # The paper's prompt, exactly as its code builds it (RLVR-Decomposed, rl_dataset.py ~137).
        PromptTemplate(
            "paper",
            "You are a helpful assistant.",
            "{problem}\nPlease reason step by step, and put your final answer within \\boxed{{}}.",
        ),
        # Qwen2.5-Math's evaluation prompt (what this kit called "paper" before it was checked).
        PromptTemplate(
            "qwen_math",
            "Please reason step by step, and put your final answer within \\boxed{}.",
            "{problem}\nLet's think step by step and output the final answer within \\boxed{{}}.",
        ),
        # For weak models that do not box (pair with the `boxed_or_answer_is` extraction policy).
        PromptTemplate(
            "answer_is",
            "You are a helpful math assistant.",
            "{problem}\nSolve the problem step by step. End with the line 'The answer is: <answer>'.",
        ),
        # For models without a chat template: the plain text the model family was pretrained on
        # (priors/family.py: prompt + worked solution + EOS), so the answer starts where pretraining's did.
        PromptTemplate("plain", "", "Q: {problem}\nA:\n", chat=False),
    )
}


class PromptTooLong(ValueError):
    pass


def render(tokenizer, problem: str, template: str = "paper") -> list[int]:
    """Token ids of the chat-templated prompt, ending with the assistant turn's opening."""
    if template not in PROMPTS:
        raise ValueError(f"unknown prompt template {template!r}; known: {', '.join(PROMPTS)}")
    t = PROMPTS[template]
    if not t.chat:
        return list(tokenizer(t.user.format(problem=problem), add_special_tokens=False)["input_ids"])
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"prompt={template!r} needs a chat template, which this model's tokenizer has none of; "
                         "use prompt=plain (plain text, as the model family is pretrained on)")
    messages = ([{"role": "system", "content": t.system}] if t.system else []) + [
        {"role": "user", "content": t.user.format(problem=problem)}
    ]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):
        ids = ids["input_ids"]
    return list(ids)


def check_budget(prompt_ids: list[int], max_tokens: int, context: int, where: str = "prompt") -> None:
    """A prompt that leaves no room for `max_tokens` is an error, never a silent truncation."""
    if len(prompt_ids) + max_tokens > context:
        raise PromptTooLong(
            f"{where}: {len(prompt_ids)} prompt tokens + max_tokens={max_tokens} exceed the model's "
            f"context of {context}; lower max_tokens or filter long problems (max_prompt_tokens)"
        )


def context_length(model_path_or_config) -> int:
    cfg = model_path_or_config
    if isinstance(cfg, str):
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(cfg)
    return int(getattr(cfg, "max_position_embeddings", 2048))


def encode_examples(tokenizer, problems: Sequence, template: str) -> tuple[list[list[int]], list[list[int]]]:
    """(prompt ids, solution ids + EOS) per worked problem, the prompt as the RL runs render it: what a rung is
    trained and scored on (SFT, pretraining, held-out loss)."""
    return ([render(tokenizer, p.problem, template) for p in problems],
            [tokenizer(p.solution, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for p in problems])
