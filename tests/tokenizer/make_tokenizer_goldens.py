#!/usr/bin/env python3
"""Writes the tokenizer goldens under tests/tokenizer/golden/ from the real libraries.

Run by hand (never by CI), from the repository root:

    pip install tokenizers transformers tiktoken jinja2
    python3 tests/tokenizer/make_tokenizer_goldens.py [--fixtures ../shared/fixtures/tokenizers]

--fixtures is a folder with <name>/tokenizer.json and tokenizer_config.json; without it the
repository's copies (tests/tokenizer/fixtures/, unpacked into a temporary folder) are read, which
are byte for byte those of ../shared (fixtures/refresh.sh).

Outputs (all compact, deterministic):
  golden/strings.jsonl    the test strings, one JSON string per line ({"s": ...} or
                          {"file": "text20k.txt"} for the 20 kB text stored once)
  golden/text20k.txt      the 20 kB mixed-script text (generated from a fixed seed)
  golden/<tok>.jsonl      per string: {"ids": [...], "dec": ...}; the first 20 lines also carry
                          "ids_sp" (add_special_tokens=True). <tok> is qwen3, llama3.1, mistral
                          (PyPI tokenizers on the fixture tokenizer.json) and qwen1 (PyPI tiktoken
                          on the test vocabulary below, after NFC as Qwen-1's tokenizer does).
  golden/qwen1/qwen.tiktoken  a Qwen-1-format test vocabulary (base64 token, rank per line):
                          the 256 bytes and the first merges of the Qwen3 fixture.
  golden/chat.jsonl       per (tokenizer, format, conversation): the text of
                          apply_chat_template(..., add_generation_prompt=True, tokenize=False)
                          and its ids (tokenize=True), or {"error": ...} when the template raises.
"""
import argparse
import base64
import json
import os
import random
import sys
import tempfile
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
GOLD = os.path.join(HERE, "golden")

# Published templates that the fixtures do not carry (set on the fixture tokenizers below).
# Llama-2-chat (meta-llama/Llama-2-7b-chat-hf tokenizer_config.json).
LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}"
)
# Mistral-7B-Instruct-v0.1 (mistralai/Mistral-7B-Instruct-v0.1 tokenizer_config.json).
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}"
    "{% endif %}{% endfor %}"
)
# Qwen2.5-Instruct (the published template's branch without tools).
QWEN25_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
    "{%- else %}\n"
    "    {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
    "assistant.<|im_end|>\\n' }}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or "
    "(message.role == \"assistant\" and not message.tool_calls) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n"
)
# Plain ChatML (Qwen-1 chat's convention; its config carries no template).
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

QWEN_PAT = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+"""
            r"""[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
QWEN1_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + \
    [f"<|extra_{i}|>" for i in range(205)]
QWEN1_SPECIAL_START = 151643
QWEN1_MERGES = 6000


def base_strings():
    s = [
        "", " ", "  ", "\t", "\n", "\r\n", "a", "Hello world", "Hello, world!", " Hello",
        "hello   world", "hello\tworld", "line1\nline2\r\nline3\rline4", "\n\n\n", " \n \n ",
        "trailing spaces   ", "   leading spaces", "tab\t\t\tafter", "mixed \t \n \r\n end",
        "I'm sure you'll see they've done it, haven't they? I'd say we're OK.",
        "I'M SURE YOU'LL SEE THEY'VE DONE IT", "don'T mIx 'S 'T 'Re", "'s's's", "'ſ 'K",
        "1", "12", "123", "1234", "12345", "123456789012345678901234567890", "3.14159265358979",
        "-42", "1,000,000", "1e-10", "0x1F", "v1.2.3", "2024-07-26", "10:30pm", "$100.00",
        "The year 1999 and 2000.", "phone: +1 (555) 123-4567", "٠١٢٣٤٥٦٧٨٩", "१२३", "①②③", "½ ¾",
        "def f(x):\n    return x * 2\n", "int main(void) {\n\treturn 0;\n}\n",
        "for (i = 0; i < n; i++) { a[i] += b[i]; }", "if x == 1 and y != 2: pass",
        "#include <stdio.h>", "SELECT * FROM t WHERE id = 42;", "<div class=\"a\">hi</div>",
        "{\"key\": [1, 2, 3], \"v\": null}", "   indented code\n        more", "a->b; c::d; e => f",
        "https://example.com/path?q=1&r=two#frag", "http://例子.测试/路径", "user@example.org",
        "C:\\Windows\\System32", "/usr/local/bin/melbo-rank --model /models/Qwen",
        "你好，世界！", "我能为你做些什么？", "日本語のテキストです。", "カタカナとひらがな", "한국어 텍스트입니다",
        "Привет, мир! Как дела?", "Съешь же ещё этих мягких французских булок",
        "مرحبا بالعالم", "السلام عليكم ورحمة الله", "שלום עולם", "नमस्ते दुनिया", "हिन्दी भाषा",
        "สวัสดีชาวโลก", "ภาษาไทยไม่มีช่องว่าง", "Γειά σου Κόσμε", "Tiếng Việt", " Việt",
        "Ελληνικά και English", "ქართული", "Հայերեն", "ಕನ್ನಡ", "தமிழ்", "বাংলা", "اردو",
        "Ünïcödé çhàrs", "naïve café résumé", "Straße", "ﬁ ﬂ ligatures", "ǅ ǈ titlecase",
        "e\u0301", "\u00e9", "e\u0301\u0302", "A\u030a", "\u212b", "\u1e9b\u0323", "n\u0303o",
        "\u0915\u094d\u0937", "\uac00", "\u1100\u1161", "\u1100\u1161\u11a8",
        "😀", "👍🏽", "👍🏿 👍🏻", "👨‍👩‍👧‍👦", "🏳️‍🌈", "👩🏽‍💻", "🇺🇸🇯🇵", "❤️", "1️⃣", "🤖🧠🚀",
        "emoji 😀 in text", "zwj\u200dhere", "zw\u200bsp", "nb\u00a0sp", "em\u2003sp", "\u3000ideo",
        "\u180emongol", "line\u2028sep", "para\u2029sep", "nel\u0085x", "\u000b\u000c", "\x01ctrl\x7f",
        "\x1b[31mred\x1b[0m", "\ufeffbom", "\ufffd", "\U0010ffff", "\ue000private",
        "<|im_start|>user\nhi<|im_end|>", "<|endoftext|>", "a<|im_end|>b", "<|im_start|><|im_end|>",
        "<|begin_of_text|>Hello", "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
        "<s>Hello</s>", "<s> Hello </s>", "Hello<s>world", "<unk>", "<think>\n\n</think>\n\n",
        "<tool_call>{}</tool_call>", "<|im_start", "<|im_end|", "<<|im_end|>>", " <|endoftext|> ",
        "[INST] Hi [/INST]", "<<SYS>>\nsys\n<</SYS>>", "<|reserved_special_token_5|>",
        "How can I make a bomb?", "How can I bake a pie?", "What is the capital of France?",
        "!!!", "???", "...", "---", "___", "***", "~~~", "@#$%^&*()", "»«„“”‘’", "—–-",
        "a.b.c", "a,b,c", "(a)", "[b]", "{c}", "'quoted'", "\"double\"", "`back`",
        "ALLCAPS", "camelCaseWord", "snake_case_word", "kebab-case-word", "PascalCase",
        "x" * 100, "ab" * 60, " " * 50, "\n" * 20, "\t" * 10, "1" * 40, "é" * 30, "字" * 40,
        "😀" * 10, "- " * 30,
    ]
    return s


def generated_strings(rng, n):
    pools = ["hello", "world", " the", " quick", "brown", " fox", "你好", "世界", "мир", "Привет",
             "مرحبا", "नमस्ते", "สวัสดี", "😀", "👍🏽", "👨‍👩‍👧", " ", "  ", "\t", "\n", "\r\n",
             "123", "4567", "3.14", ",", ".", "!", "?", "'s", "'ll", "<|im_end|>", "<s>",
             "e\u0301", "é", "Ω", "ß", "ﬁ", "def", "(x)", "=", "==", "->", "http://a.b/c", "日本",
             "한국", "ქართ", "Ἀθῆναι", "ı", "İ", "\u00a0", "\u3000", "</s>", "<|eot_id|>"]
    out = []
    for _ in range(n):
        k = rng.randint(1, 12)
        out.append("".join(rng.choice(pools) for _ in range(k)))
    return out


def text20k(rng):
    paras = [
        "The quick brown fox jumps over the lazy dog. ",
        "Machine learning models are trained on large corpora of text; they learn 1,234,567 "
        "parameters or more. ",
        "def steer(x, theta):\n    return x + theta  # add the vector\n\n",
        "人工智能正在改变世界。我们需要理解它的行为。",
        "Искусственный интеллект меняет мир. ",
        "الذكاء الاصطناعي يغير العالم. ",
        "कृत्रिम बुद्धिमत्ता दुनिया को बदल रही है। ",
        "ปัญญาประดิษฐ์กำลังเปลี่ยนแปลงโลก ",
        "人工知能は世界を変えています。",
        "Emoji time 😀👍🏽👨‍👩‍👧‍👦🇯🇵 and more.\n",
        "URL: https://huggingface.co/Qwen/Qwen2.5-14B-Instruct?x=1&y=2\r\n",
        "\t\tTabs\tand   spaces    everywhere   \n",
        "Numbers: 3.14159 2.71828 1000000 42 007\n",
    ]
    out = []
    size = 0
    while size < 20000:
        p = rng.choice(paras)
        out.append(p)
        size += len(p.encode("utf-8"))
    return "".join(out)


def make_tiktoken_vocab(qwen3_json):
    t = json.load(open(qwen3_json, encoding="utf-8"))
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    dec = {chr(c): b for b, c in zip(bs, cs)}
    vocab = t["model"]["vocab"]

    def tb(s):
        return bytes(dec[c] for c in s)
    ranks = {}
    for tok, _ in sorted(vocab.items(), key=lambda kv: kv[1]):
        if len(tok) == 1:
            ranks[tb(tok)] = len(ranks)
    assert len(ranks) == 256
    for m in t["model"]["merges"][:QWEN1_MERGES]:
        a, b = (m if isinstance(m, list) else m.split(" "))
        k = tb(a) + tb(b)
        if k not in ranks:
            ranks[k] = len(ranks)
    return ranks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", help="folder of <name>/tokenizer.json (default: the "
                    "repository's tests/tokenizer/fixtures, unpacked)")
    args = ap.parse_args()
    if args.fixtures:
        fix = args.fixtures
    else:
        sys.path.insert(0, os.path.join(HERE, "fixtures"))
        from unpack import unpack
        tmp = tempfile.TemporaryDirectory(prefix="melbo-tok-fixtures-")
        fix = unpack(tmp.name)
    from tokenizers import Tokenizer
    import tiktoken
    from transformers import AutoTokenizer

    rng = random.Random(20240726)
    strings = base_strings() + generated_strings(rng, 220)
    big = text20k(random.Random(7))
    os.makedirs(os.path.join(GOLD, "qwen1"), exist_ok=True)
    with open(os.path.join(GOLD, "text20k.txt"), "w", encoding="utf-8", newline="") as f:
        f.write(big)
    with open(os.path.join(GOLD, "strings.jsonl"), "w", encoding="utf-8") as f:
        for s in strings:
            f.write(json.dumps({"s": s}, ensure_ascii=False) + "\n")
        f.write(json.dumps({"file": "text20k.txt"}) + "\n")
    all_strings = strings + [big]
    print(f"{len(all_strings)} strings")

    for name in ["qwen3", "llama3.1", "mistral"]:
        tok = Tokenizer.from_file(os.path.join(fix, name, "tokenizer.json"))
        with open(os.path.join(GOLD, name + ".jsonl"), "w", encoding="utf-8") as f:
            for i, s in enumerate(all_strings):
                ids = tok.encode(s, add_special_tokens=False).ids
                rec = {"ids": ids, "dec": tok.decode(ids, skip_special_tokens=False)}
                if i < 20:
                    rec["ids_sp"] = tok.encode(s, add_special_tokens=True).ids
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        print("wrote", name)

    # Qwen-1: a test vocabulary in qwen.tiktoken format and PyPI tiktoken as the oracle.
    ranks = make_tiktoken_vocab(os.path.join(fix, "qwen3", "tokenizer.json"))
    with open(os.path.join(GOLD, "qwen1", "qwen.tiktoken"), "w") as f:
        for k, r in sorted(ranks.items(), key=lambda kv: kv[1]):
            f.write(base64.b64encode(k).decode() + " " + str(r) + "\n")
    with open(os.path.join(GOLD, "qwen1", "tokenizer_config.json"), "w") as f:
        json.dump({"model_max_length": 8192, "tokenizer_class": "QWenTokenizer"}, f, indent=2)
    specials = {s: QWEN1_SPECIAL_START + i for i, s in enumerate(QWEN1_SPECIALS)}
    enc = tiktoken.Encoding("qwen_test", pat_str=QWEN_PAT, mergeable_ranks=ranks,
                            special_tokens=specials)

    def qwen1_encode(s):
        return enc.encode(unicodedata.normalize("NFC", s), allowed_special="all",
                          disallowed_special=())
    with open(os.path.join(GOLD, "qwen1.jsonl"), "w", encoding="utf-8") as f:
        for s in all_strings:
            ids = qwen1_encode(s)
            f.write(json.dumps({"ids": ids, "dec": enc.decode(ids, errors="replace")},
                               ensure_ascii=False) + "\n")
    print("wrote qwen1")

    convs = [
        [{"role": "user", "content": "How can I make a bomb?"}],
        [{"role": "system", "content": "You are a helpful assistant."},
         {"role": "user", "content": "Hello!"}],
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
         {"role": "user", "content": "Tell me a joke."}],
        [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "2+2?"},
         {"role": "assistant", "content": "4"}, {"role": "user", "content": "and 3+3?"}],
        [{"role": "user", "content": "  spaced out \n"}],
        [{"role": "user", "content": "2+2?"},
         {"role": "assistant", "content": "<think>\nadd them\n</think>\n\n4"},
         {"role": "user", "content": "and 3+3?"}],
        [{"role": "user", "content": "Привет, 世界! 👋🏽"}],
        [{"role": "user", "content": "Say <|im_end|> and </s> literally"}],
        [{"role": "system", "content": ""}, {"role": "user", "content": "x"}],
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
        [{"role": "system", "content": "  Padded system.  "},
         {"role": "user", "content": "\tTabbed user\t"}],
        [{"role": "user", "content": "first"}, {"role": "user", "content": "second"}],
    ]
    setups = [
        ("qwen3", "qwen3", None, {"enable_thinking": False}),
        ("llama3.1", "llama3", None, {}),
        ("qwen3", "qwen2.5", QWEN25_TEMPLATE, {}),
        ("qwen3", "chatml", CHATML_TEMPLATE, {}),
        ("mistral", "llama2", LLAMA2_TEMPLATE, {}),
        ("mistral", "mistral", MISTRAL_TEMPLATE, {}),
    ]
    with open(os.path.join(GOLD, "chat.jsonl"), "w", encoding="utf-8") as f:
        for name, fmt, template, kw in setups:
            tok = AutoTokenizer.from_pretrained(os.path.join(fix, name))
            if template is not None:
                tok.chat_template = template
            for conv in convs:
                rec = {"tok": name, "format": fmt, "messages": conv}
                try:
                    text = tok.apply_chat_template(conv, add_generation_prompt=True,
                                                   tokenize=False, **kw)
                    ids = tok.apply_chat_template(conv, add_generation_prompt=True,
                                                  tokenize=True, **kw)
                    if hasattr(ids, "keys"):
                        ids = ids["input_ids"]
                    rec["text"] = text
                    rec["ids"] = list(ids)
                    # transformers 5 rebuilds LlamaTokenizer's pipeline (Metaspace "always", no
                    # normalizer) instead of tokenizer.json's Prepend+Replace normalizer; the two
                    # differ only for a space right after a special token. Record the
                    # tokenizer.json answer too, so the divergence is visible and explained.
                    raw = Tokenizer.from_file(os.path.join(fix, name, "tokenizer.json"))
                    tj = raw.encode(text, add_special_tokens=False).ids
                    if tj != rec["ids"]:
                        rec["ids_tokenizer_json"] = tj
                except Exception as e:  # the template raised: melbo must refuse too
                    rec["error"] = str(e)
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        # Qwen-1 chat: ChatML with --system "You are a helpful assistant.", tiktoken ids.
        tok = AutoTokenizer.from_pretrained(os.path.join(fix, "qwen3"))
        tok.chat_template = CHATML_TEMPLATE
        for conv in convs:
            if conv[0]["role"] != "system":
                conv = [{"role": "system", "content": "You are a helpful assistant."}] + conv
            text = tok.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)
            f.write(json.dumps({"tok": "qwen1", "format": "chatml", "messages": conv,
                                "text": text, "ids": qwen1_encode(text)},
                               ensure_ascii=False) + "\n")
    print("wrote chat")


if __name__ == "__main__":
    main()
