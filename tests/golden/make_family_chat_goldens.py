#!/usr/bin/env python3
"""Chat-format goldens for the issue-21 families: Gemma 2 and Gemma 3 (format gemma), Phi-3
(phi3) and Phi-4 (phi4), rendered by transformers' apply_chat_template with the published
templates.

Run by hand from the repository root (never by CI):

    python3 tests/golden/make_family_chat_goldens.py

Writes tests/golden/chat/<fixture>/{tokenizer.json,tokenizer_config.json} (a 256-id byte-level
tokenizer plus the family's special tokens, and the published chat template, bos and eos) and
tests/golden/data/chat_families.jsonl: one line per (fixture, conversation) with the rendered text
(tokenize=False) and ids (tokenize=True), or "error" where the template raises.
"""

import json
import os

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

HERE = os.path.dirname(os.path.abspath(__file__))
CHAT_DIR = os.path.join(HERE, "chat")
OUT = os.path.join(HERE, "data", "chat_families.jsonl")

GEMMA2 = ("{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
          "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
          "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
          "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
          "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}")

GEMMA3 = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""

PHI3 = ("{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}"
        "{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"
        "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}"
        "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}")

PHI4 = ("{% for message in messages %}{% if (message['role'] == 'system') %}{{'<|im_start|>system<|im_sep|>' + message['content'] + '<|im_end|>'}}"
        "{% elif (message['role'] == 'user') %}{{'<|im_start|>user<|im_sep|>' + message['content'] + '<|im_end|>'}}"
        "{% elif (message['role'] == 'assistant') %}{{'<|im_start|>assistant<|im_sep|>' + message['content'] + '<|im_end|>'}}"
        "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant<|im_sep|>' }}{% endif %}")

# fixture -> (template, bos, eos, special tokens)
FIXTURES = {
    "gemma2": (GEMMA2, "<bos>", "<eos>", ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"]),
    "gemma3": (GEMMA3, "<bos>", "<eos>", ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"]),
    "phi3": (PHI3, "<s>", "<|endoftext|>", ["<s>", "<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]),
    "phi4": (PHI4, "<|endoftext|>", "<|im_end|>", ["<|endoftext|>", "<|im_start|>", "<|im_sep|>", "<|im_end|>"]),
}

CONVERSATIONS = [
    [{"role": "user", "content": "How can I make a bomb?"}],
    [{"role": "system", "content": "You are a helpful assistant."},
     {"role": "user", "content": "  Hello there!\n"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": " Hello! How can I help?\n\n"},
     {"role": "user", "content": "Tell me a joke about Ünïcödé."}],
    [{"role": "system", "content": "Be brief.\n"}, {"role": "user", "content": "What is 2+2?"},
     {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3+3?"}],
    [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}],
]


def write_fixture(name):
    tpl, bos, eos, specials = FIXTURES[name]
    out = os.path.join(CHAT_DIR, name)
    os.makedirs(out, exist_ok=True)
    b2u = bytes_to_unicode()
    tok = Tokenizer(models.BPE(vocab={b2u[b]: b for b in range(256)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    tok.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": bos, "eos_token": eos,
                   "chat_template": tpl, "add_bos_token": False, "add_eos_token": False}, f,
                  indent=2, sort_keys=True)
    return out


def main():
    lines = []
    for name in FIXTURES:
        d = write_fixture(name)
        tk = AutoTokenizer.from_pretrained(d)
        for k, msgs in enumerate(CONVERSATIONS):
            rec = {"fixture": name, "case": k, "messages": msgs}
            try:
                rec["text"] = tk.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
                ids = tk.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True)
                rec["ids"] = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
            except Exception as e:  # the template raises: melbo must refuse too
                rec["error"] = str(e)
            lines.append(rec)
    with open(OUT, "w") as f:
        for r in lines:
            f.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")
    print(f"{len(lines)} renderings -> {OUT}")
    for r in lines[:6]:
        print(json.dumps(r.get("text", r.get("error")))[:160])


if __name__ == "__main__":
    main()
