// chargen's tokenizers (chargen/tokenizer.py) for the prompt and the generated ids: characters,
// words (\w+|[^\w\s]|\s+ with Python's meaning of \w and \s) and BPE (merges applied by rank
// inside each word token, an unknown character alone as <unk>). No DOM here.

const UNK = "<unk>";
const UNK_TEXT = "\ufffd"; // <unk> decodes to the replacement character
// Python's str.isspace() characters (what re's \s matches in a str pattern)
const SPACE = "\\t-\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
// Python's \w: str.isalnum() or "_" (letters and numbers of every script)
const WORD = "\\p{L}\\p{N}_";
export const WORD_PATTERN = new RegExp(`[${WORD}]+|[^${WORD}${SPACE}]|[${SPACE}]+`, "gu");

export class Tokenizer {
  // data: the run's tokenizer.json ({kind, vocab, unk, merges})
  constructor(data) {
    this.kind = data.kind;
    this.vocab = data.vocab;
    this.unk = data.unk ?? null;
    this.stoi = new Map(this.vocab.map((tok, i) => [tok, i]));
    if (this.unk !== null) this.stoi.delete(UNK);
    this.pieces = this.vocab.map((tok, i) => (i === this.unk ? UNK_TEXT : tok));
    if (this.kind === "bpe") {
      this.ranks = new Map((data.merges || []).map(([a, b], r) => [`${a}\u0000${b}`, r]));
    }
  }

  get size() {
    return this.vocab.length;
  }

  // The symbols of a text: characters, or word tokens (BPE reads word tokens too).
  split(text) {
    return this.kind === "char" ? Array.from(text) : text.match(WORD_PATTERN) || [];
  }

  // {ids, unknown}: ids of the text; a symbol the vocabulary lacks becomes <unk> when there is
  // one, else is dropped (chargen's --unknown warn) and listed in unknown (first seen first).
  encode(text) {
    const ids = [];
    const unknown = new Set();
    for (const symbol of this.split(text)) {
      if (this.kind === "bpe") {
        ids.push(...this.bpe(symbol));
        continue;
      }
      const id = this.stoi.get(symbol);
      if (id !== undefined) ids.push(id);
      else if (this.unk !== null) ids.push(this.unk);
      else unknown.add(symbol);
    }
    if (this.kind === "bpe") for (const ch of text) if (!this.stoi.has(ch)) unknown.add(ch);
    return { ids, unknown: [...unknown] };
  }

  // BPE ids of one word token: its characters (an unknown one alone as <unk>), then the
  // lowest-ranked adjacent pair merged everywhere, left to right, until no pair has a rank.
  bpe(word) {
    let parts = Array.from(word);
    for (;;) {
      let best = -1;
      for (let i = 0; i + 1 < parts.length; i++) {
        const rank = this.ranks.get(`${parts[i]}\u0000${parts[i + 1]}`);
        if (rank !== undefined && (best < 0 || rank < best)) best = rank;
      }
      if (best < 0) break;
      const merged = [];
      for (let i = 0; i < parts.length; i++) {
        if (i + 1 < parts.length && this.ranks.get(`${parts[i]}\u0000${parts[i + 1]}`) === best) {
          merged.push(parts[i] + parts[i + 1]);
          i++;
        } else merged.push(parts[i]);
      }
      parts = merged;
    }
    return parts.map((p) => this.stoi.get(p) ?? this.unk);
  }

  piece(id) {
    return this.pieces[id];
  }

  decode(ids) {
    return ids.map((id) => this.pieces[id]).join("");
  }

  // The token an empty prompt starts from: a newline when the vocabulary has one, else id 0.
  startToken() {
    const id = this.vocab.indexOf("\n");
    return id >= 0 && id !== this.unk ? id : 0;
  }
}
