"""A VLM judge behind an OpenAI-compatible chat server (vLLM, sglang): P("Yes") to a yes/no question per image.

Each image is one request, `POST {url}/v1/chat/completions` with JSON
`{"model": M, "messages": [{"role": "user", "content": [{"type": "text", "text": QUESTION},
{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}]}], "max_tokens": 1, "logprobs": true,
"top_logprobs": K}` (text before image, as t2v_metrics' GPT-4o VQAScore sends them), and is scored from the
reply's `choices[0].logprobs.content[0].top_logprobs`: the first generated token's K most likely tokens.

The rule: a token counts as "Yes" (or "No") when, with whitespace and the tokenizers' word markers "▁" and "Ġ"
stripped, it equals "yes" (or "no") in any case, so "Yes", " yes" and "YES" all count; the probabilities
exp(logprob) of all such tokens are summed (they are different outcomes of one token). With `normalise` (the
default) the score is p_yes / (p_yes + p_no), a token absent from the top K counting 0; without, it is
t2v_metrics' GPT-4o rule (linzhiqiu/t2v_metrics `t2v_metrics/models/vqascore_models/gpt4v_model.py`, commit
6ecb74f9): p_yes when a "Yes" token is in the top K, else 1 − p_no (t2v_metrics keeps the last matching token,
this sums them). VQAScore proper (CLIP-FlanT5) scores the unnormalised P("Yes") over the whole vocabulary, which a
top-K reply cannot give; the normalised score removes the mass the model puts on other tokens. When neither is in
the top K the score is `missing` if given (t2v_metrics uses 0), else a one-line error naming the tokens found.
"""

from __future__ import annotations

import base64
import io
import math
import numbers
import os
import string
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from PIL import Image

from noisesearch.errors import NoiseSearchError
from noisesearch.imaging import to_uint8
from noisesearch.rewards.http import Poster, check_url, excerpt
from noisesearch.rewards.registry import register_reward

NAME = "vlm_judge"
DEFAULT_QUESTION = 'Does this figure show "{prompt}"? Please answer yes or no.'
FIELDS = ("prompt", "label")
WORD_MARKERS = "▁Ġ"


def png_data_url(pixels: np.ndarray) -> str:
    """One (H, W) or (H, W, 3) uint8 image as a PNG data URL."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def answer_of(token: str) -> str:
    """'yes', 'no' or '' for a token's text (whitespace and word markers stripped, case folded)."""
    word = token.strip().strip(WORD_MARKERS).strip().lower()
    return word if word in ("yes", "no") else ""


def yes_probability(top: list[dict[str, Any]], normalise: bool) -> float | None:
    """The score of one first token's top logprobs by the rule above; None when neither answer is among them
    (or both have probability 0)."""
    mass = {"yes": 0.0, "no": 0.0}
    found = set()
    for entry in top:
        answer = answer_of(entry["token"])
        if answer:
            mass[answer] += math.exp(entry["logprob"])
            found.add(answer)
    if not found or mass["yes"] + mass["no"] == 0:
        return None
    if normalise:
        return mass["yes"] / (mass["yes"] + mass["no"])
    return mass["yes"] if "yes" in found else 1.0 - mass["no"]


def question_fields(question: str) -> set[str]:
    """The fields a question template uses; a one-line error for others or a malformed template."""
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(question) if name is not None}
    except ValueError as err:
        raise NoiseSearchError(f"{NAME}: question {question!r} is no template ({err})") from None
    unknown = sorted(fields - set(FIELDS))
    if unknown:
        raise NoiseSearchError(f"{NAME}: question uses {{{unknown[0]}}}; a template may use {{prompt}} (the "
                               "condition's prompt) and {label} (its label id)")
    return fields


@register_reward(NAME)
class VlmJudge:
    """P("Yes") in [0, 1] to a yes/no `question` per image, from a VLM on an OpenAI-compatible server (vLLM, sglang).

    The score comes from the first answer token's top log-probabilities (VQAScore's yes-probability, normalised
    over Yes/No by default). `question` is a template with {prompt} (the condition's prompt) or {label} (its label
    id); `model` is the served model's name; `api_key_env` names an environment variable holding the server's API
    key (never the key itself). Up to `concurrency` requests run at once; scores keep the images' order. Building
    the reward asks GET /v1/models whether the server is up and serves `model`. See the module docstring for the
    exact rule, `normalise` and `missing`.
    """

    name = NAME

    def __init__(self, url: str = "", model: str = "", prompts: Sequence[str] = (), question: str = DEFAULT_QUESTION,
                 top_logprobs: int = 20, normalise: bool = True, missing: float | None = None,
                 api_key_env: str = "", concurrency: int = 8, timeout: float = 60.0, retries: int = 3,
                 backoff: float = 1.0) -> None:
        base = check_url(url, NAME)
        api = base if base.endswith("/v1") else base + "/v1"
        self.url = api + "/chat/completions"
        if not isinstance(model, str) or not model:
            raise NoiseSearchError(f"{NAME} needs model=NAME, the served model's name (GET {api}/models lists it)")
        if not isinstance(question, str) or not question.strip():
            raise NoiseSearchError(f"{NAME}: question must be a non-empty template, got {question!r}")
        self.fields = question_fields(question)
        if "prompt" in self.fields and not prompts:
            raise NoiseSearchError(f"{NAME}: question {question!r} uses {{prompt}} but no prompts were given: give "
                                   "prompts, or a question with {label} for a label-conditioned model")
        for key, value in (("top_logprobs", top_logprobs), ("concurrency", concurrency)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise NoiseSearchError(f"{NAME}: {key} must be an integer >= 1, got {value!r}")
        if missing is not None and (isinstance(missing, bool) or not isinstance(missing, numbers.Real)
                                    or not 0 <= missing <= 1):
            raise NoiseSearchError(f"{NAME}: missing must be a probability in [0, 1] or none, got {missing!r}")
        headers = {}
        if api_key_env:
            if not os.environ.get(api_key_env):
                raise NoiseSearchError(f"{NAME}: api_key_env={api_key_env} names an environment variable that is "
                                       "not set: export it with the server's API key")
            headers["Authorization"] = f"Bearer {os.environ[api_key_env]}"
        self.model, self.prompts, self.question = model, list(prompts), question
        self.top_logprobs, self.normalise, self.missing = int(top_logprobs), bool(normalise), missing
        self.concurrency = int(concurrency)
        self.poster = Poster(NAME, timeout, retries, backoff, headers)
        self.check_model(api + "/models")

    def check_model(self, models_url: str) -> None:
        """Asks the server (GET /v1/models, as vLLM and sglang answer it) whether it is up and serves the model;
        a server without that route (404) is taken as up."""
        response = self.poster.send("GET", models_url, accept=(404,))
        if response.status_code == 404:
            return
        try:
            served = [entry["id"] for entry in response.json()["data"]]
        except (ValueError, KeyError, TypeError):
            raise NoiseSearchError(f"{NAME}: {models_url} answered no OpenAI model list: is {self.url} an "
                                   "OpenAI-compatible server?") from None
        if self.model not in served:
            raise NoiseSearchError(f"{NAME}: {models_url} serves {served}, not model {self.model!r}: give model= "
                                   "one of them")

    def __call__(self, images: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        questions = self.questions(cond, len(images))
        urls = [png_data_url(p) for p in to_uint8(images)]
        with ThreadPoolExecutor(max_workers=max(1, min(self.concurrency, len(urls)))) as pool:
            scores = list(pool.map(self.ask, urls, questions))
        return torch.tensor(scores, dtype=torch.float32)

    def questions(self, cond: torch.Tensor | None, n: int) -> list[str]:
        """Each image's question; checked before any request."""
        if not self.fields:
            return [self.question] * n
        if cond is None or len(cond) != n:
            raise NoiseSearchError(f"{NAME}: question {self.question!r} needs one condition per image")
        labels = cond.long().tolist()
        if "prompt" in self.fields:
            bad = [i for i in labels if not 0 <= i < len(self.prompts)]
            if bad:
                raise NoiseSearchError(f"{NAME}: condition {bad[0]} has no prompt ({len(self.prompts)} given)")
        return [self.question.format(prompt=self.prompts[i] if "prompt" in self.fields else "", label=i)
                for i in labels]

    def ask(self, image_url: str, question: str) -> float:
        """P("Yes") for one image and question: one request, the reply checked."""
        body = {"model": self.model, "max_tokens": 1, "logprobs": True, "top_logprobs": self.top_logprobs,
                "messages": [{"role": "user", "content": [{"type": "text", "text": question},
                                                          {"type": "image_url", "image_url": {"url": image_url}}]}]}
        response = self.poster.send("POST", self.url, json=body)
        try:
            top = response.json()["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
            top = [{"token": str(t["token"]), "logprob": float(t["logprob"])} for t in top]
        except (ValueError, KeyError, IndexError, TypeError):
            raise NoiseSearchError(f"{NAME}: the reply of {self.url} holds no logprobs "
                                   f"(choices[0].logprobs.content[0].top_logprobs; it began "
                                   f"{excerpt(response.text[:120])!r}): does the server return logprobs "
                                   "(vLLM: --max-logprobs >= top_logprobs)?") from None
        if not all(t["logprob"] <= 0 for t in top):
            raise NoiseSearchError(f"{NAME}: {self.url} answered a log-probability that is NaN or above 0")
        score = yes_probability(top, self.normalise)
        if score is None:
            if self.missing is None:
                raise NoiseSearchError(f"{NAME}: neither Yes nor No among the top {len(top)} tokens "
                                       f"{[t['token'] for t in top][:8]} that {self.url} answered for "
                                       f"{question!r}: raise top_logprobs, reword the question, or set missing=P")
            return float(self.missing)
        return score
