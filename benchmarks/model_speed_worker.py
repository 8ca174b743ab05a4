"""One process of benchmarks/model_speed.py: loads the embedded GGUF with llama-cpp-python and times variants.

Standalone on purpose (numpy and llama_cpp only, no chaperone import), so the same file runs under a
throwaway venv holding another llama.cpp build. Reads a JSON job on stdin, writes one JSON line per
measurement on stdout:

    {"model": path, "messages": [...], "schema": {...}, "gen_tokens": N, "reps": R,
     "variants": [{"name": ..., "load": {Llama kwargs}, "gen_threads": int | null, "path": ...}, ...]}

Variants run interleaved (rep 1: A, B, C ...; rep 2: A, B, C ...) so that load from other processes on
this shared machine falls on all of them alike. A Llama is reloaded only when the next variant's load
settings differ (the weights are mmapped from the page cache, so that costs a second or two).

Paths (how a token is produced once the prompt is read):
  raw           Llama.eval + numpy argmax over the logits: llama.cpp's decode and nothing else.
  sampler       Llama.generate, greedy: llama.cpp's C sampler chain over the whole vocabulary.
  chat          create_chat_completion(stream=True), greedy, no penalty: llama-cpp-python's chat path.
  chat-<args>   the same with the sampling arguments in the variant's "args" (and "schema": true for the
                reviewer's JSON-schema grammar).
  pair          two Llamas generating at once in two threads (raw loop), as per-role contexts can.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import numpy as np


def system_info() -> str:
    import llama_cpp

    return llama_cpp.llama_print_system_info().decode(errors="replace").strip()


def rss_mib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return 0


class Loader:
    """Keeps the last Llama and reloads only when the settings change."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.llm: Any = None
        self.key = ""
        self.formatter: Any = None
        self.load_s = 0.0
        self._twin: Any = None

    def get(self, load: dict[str, Any]) -> Any:
        key = json.dumps(load, sort_keys=True)
        if key != self.key:
            from llama_cpp import Llama

            for held in (self.llm, self._twin):
                if held is not None:
                    held.close()
            self.llm = self._twin = None
            started = time.perf_counter()
            self.llm = Llama(model_path=self.model, verbose=False, **load)
            self.load_s = time.perf_counter() - started
            self.key = key
            warm_up(self.llm)
        return self.llm

    def twin(self, load: dict[str, Any]) -> Any:
        """A second Llama with the same settings (for the "pair" path), kept while the settings stay."""
        from llama_cpp import Llama

        if self._twin is None:  # get() closes it when the settings change
            self._twin = Llama(model_path=self.model, verbose=False, **load)
            warm_up(self._twin)
        return self._twin

    def prompt_tokens(self, llm: Any, messages: list[dict[str, str]]) -> list[int]:
        """The tokens create_chat_completion feeds for these messages (the GGUF's own chat template)."""
        from llama_cpp import llama_chat_format

        eos, bos = llm.token_eos(), llm.token_bos()
        fmt = llama_chat_format.Jinja2ChatFormatter(
            template=llm.metadata["tokenizer.chat_template"],
            eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
            bos_token=llm._model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )
        result = fmt(messages=messages)
        return llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)


def warm_up(llm: Any) -> None:
    """A few decodes right after loading, so that the first variant measured on a fresh Llama does not pay
    for first-touch page faults and buffer allocation (it read ~20 % slower than the next ones)."""
    llm.reset()
    llm.eval(llm.tokenize(b"Warm up the model.", add_bos=False))
    for _ in range(4):
        llm.eval([llm.token_eos()])
    llm.reset()


def set_threads(llm: Any, variant: dict[str, Any]) -> None:
    """Generation threads may differ from prompt (batch) threads: llama_set_n_threads sets both at once."""
    import llama_cpp

    gen = variant.get("gen_threads") or llm.context_params.n_threads
    llama_cpp.llama_set_n_threads(llm._ctx.ctx, gen, llm.context_params.n_threads_batch)


def run_raw(llm: Any, tokens: list[int], n: int, use_sampler: bool) -> dict[str, Any]:
    llm.reset()  # n_tokens = 0: eval() drops the whole KV cache first
    started = time.perf_counter()
    llm.eval(tokens)
    prompt_s = time.perf_counter() - started
    out: list[int] = []
    started = time.perf_counter()
    if use_sampler:
        # The prompt is already in the context: generate() sees it and samples from its logits. It stops
        # after the (n+1)th sample, so it has decoded n tokens, as the raw loop does.
        for token in llm.generate(tokens, temp=0.0, repeat_penalty=1.0):
            out.append(token)
            if len(out) == n + 1:
                break
        out = out[:n]
    else:
        out = raw_greedy(llm, n)
    gen_s = time.perf_counter() - started
    return {
        "prompt_tokens": len(tokens),
        "prompt_tps": len(tokens) / prompt_s,
        "gen_tokens": len(out),
        "gen_tps": len(out) / gen_s,
        "text": llm.detokenize(out).decode("utf-8", errors="replace"),
    }


def run_pair(llm: Any, twin: Any, tokens: list[int], n: int) -> dict[str, Any]:
    """Two contexts generating at the same time, as chaperone's per-role contexts do (the reviewer reads a
    chunk while the assistant writes the next one): both prompts read first, one after the other, then both
    generate in two Python threads (llama.cpp releases the GIL in decode). gen_tps is the two together."""
    import threading

    for model in (llm, twin):
        model.reset()
        model.eval(tokens)
    texts: dict[int, str] = {}

    def generate(model: Any, slot: int) -> None:
        texts[slot] = model.detokenize(raw_greedy(model, n)).decode("utf-8", errors="replace")

    workers = [threading.Thread(target=generate, args=(m, i)) for i, m in enumerate((llm, twin))]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    gen_s = time.perf_counter() - started
    return {
        "prompt_tokens": len(tokens),
        "prompt_tps": 0.0,
        "gen_tokens": 2 * n,
        "gen_tps": 2 * n / gen_s,
        "text": texts[0],
    }


def raw_greedy(llm: Any, n: int) -> list[int]:
    """n tokens by argmax over the last logits and one decode each: no sampler, no chat machinery."""
    n_vocab = llm.n_vocab()
    out: list[int] = []
    for _ in range(n):
        logits = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(n_vocab,))
        out.append(int(logits.argmax()))
        llm.eval(out[-1:])
    return out


def run_chat(llm: Any, messages: list[dict[str, str]], n_prompt: int, n: int, variant: dict[str, Any], schema: Any):
    args: dict[str, Any] = {"temperature": 0.0, "repeat_penalty": 1.0, "seed": 42}
    args.update(variant.get("args", {}))
    if variant.get("schema"):
        args["response_format"] = {"type": "json_object", "schema": schema}
    llm.reset()
    llm.set_cache(None)
    stamps: list[float] = []
    parts: list[str] = []
    finish = None
    started = time.perf_counter()
    for chunk in llm.create_chat_completion(messages=messages, max_tokens=n, stream=True, **args):
        choice = chunk["choices"][0]
        piece = choice.get("delta", {}).get("content")
        if piece:
            stamps.append(time.perf_counter())
            parts.append(piece)
        finish = choice.get("finish_reason") or finish
    text = "".join(parts)
    result = {
        "prompt_tokens": n_prompt,
        "prompt_tps": n_prompt / (stamps[0] - started) if stamps else 0.0,  # includes the first token's sampling
        "gen_tokens": len(stamps),
        "gen_tps": (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0,
        "text": text,
        "finish": finish,
    }
    if variant.get("schema"):
        try:
            json.loads(text)
            result["json_valid"] = True
        except ValueError:
            result["json_valid"] = finish == "length"  # cut short by max_tokens is not a grammar failure
    return result


def main() -> None:
    job = json.load(sys.stdin)
    loader = Loader(job["model"])
    print(json.dumps({"system_info": system_info()}), flush=True)
    for rep in range(job["reps"]):
        for variant in job["variants"]:
            llm = loader.get(variant.get("load", {}))
            set_threads(llm, variant)
            tokens = loader.prompt_tokens(llm, job["messages"])
            path = variant.get("path", "raw")
            if path == "pair":
                twin = loader.twin(variant.get("load", {}))
                set_threads(twin, variant)
                result = run_pair(llm, twin, tokens, job["gen_tokens"])
            elif path in ("raw", "sampler"):
                result = run_raw(llm, tokens, job["gen_tokens"], use_sampler=path == "sampler")
            else:
                result = run_chat(llm, job["messages"], len(tokens), job["gen_tokens"], variant, job.get("schema"))
            result.update(variant=variant["name"], rep=rep, rss_mib=rss_mib(), load_s=round(loader.load_s, 2))
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
