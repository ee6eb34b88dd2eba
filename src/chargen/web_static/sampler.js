// chargen's sampling in the browser: its counter-based random numbers (chargen/rng.py) and
// its rules (chargen/sampling.py, numpy_rules.py): temperature, top-k, top-p, min-p, then an
// inverse-CDF draw, with the same arithmetic, so a seed draws the tokens `chargen generate`
// draws from the same logits. No DOM here: Node can import this module too.

const MASK = (1n << 64n) - 1n;
const GOLDEN = 0x9e3779b97f4a7c15n;
const M1 = 0xbf58476d1ce4e5b9n;
const M2 = 0x94d049bb133111ebn;
export const GREEDY_BELOW = 1e-12; // sampling_config.GREEDY_BELOW: a temperature below is greedy
export const MASS_TOLERANCE = 1e-12; // top-p: a cumulative mass >= p - 1e-12 reaches p
const f32 = Math.fround;

// splitmix64's finaliser on a 64-bit word (rng.mix), in wrapping 64-bit arithmetic.
export function mix(x) {
  x = (x + GOLDEN) & MASK;
  x = ((x ^ (x >> 30n)) * M1) & MASK;
  x = ((x ^ (x >> 27n)) * M2) & MASK;
  return x ^ (x >> 31n);
}

// A seed as chargen reads it: any integer (digits, optional minus), taken mod 2**64.
export function seedWord(seed) {
  return BigInt.asUintN(64, typeof seed === "bigint" ? seed : BigInt(seed));
}

// u(seed, step) = (mix(mix(seed) ^ (step * G)) >> 11) / 2**53: a float64 in [0, 1 - 2**-53],
// exactly rng.uniforms' value (the 53-bit integer and the power of two are exact doubles).
export class Uniforms {
  constructor(seed) {
    this.mixed = mix(seedWord(seed));
  }

  at(step) {
    const counter = (BigInt(step) * GOLDEN) & MASK;
    return Number(mix(this.mixed ^ counter) >> 11n) * 2 ** -53;
  }
}

// The settings, checked as SamplingConfig.validate checks them; throws one line.
export function checkConfig(cfg) {
  const t = cfg.temperature;
  if (!Number.isFinite(t) || t < 0) throw new Error(`temperature must be a finite number >= 0, got ${t}`);
  if (cfg.topK !== null && (!Number.isInteger(cfg.topK) || cfg.topK < 1)) {
    throw new Error(`top-k must be an integer >= 1, got ${cfg.topK}`);
  }
  if (cfg.topP !== null && !(cfg.topP > 0 && cfg.topP <= 1)) throw new Error(`top-p must be in (0, 1], got ${cfg.topP}`);
  if (cfg.minP !== null && !(cfg.minP >= 0 && cfg.minP <= 1)) throw new Error(`min-p must be in [0, 1], got ${cfg.minP}`);
  return cfg;
}

// softmax in float64 of float32 logits (numpy_rules.softmax64): exp(l - max l) / sum.
function softmax64(x) {
  let max = -Infinity;
  for (const v of x) if (v > max) max = v;
  const p = new Float64Array(x.length);
  let sum = 0;
  for (let i = 0; i < x.length; i++) {
    p[i] = Math.exp(x[i] - max);
    sum += p[i];
  }
  for (let i = 0; i < x.length; i++) p[i] /= sum;
  return p;
}

// Token ids from the largest value down, ties lower id first (a stable descending sort).
function rankDescending(values) {
  const order = Array.from(values, (_, i) => i);
  order.sort((a, b) => values[b] - values[a] || a - b);
  return order;
}

// Temperature: (l - max l) / T in float32, as chargen divides float32 logits by float32(T).
function temperature(x, t) {
  let max = -Infinity;
  for (const v of x) if (v > max) max = v;
  const tt = f32(t);
  for (let i = 0; i < x.length; i++) x[i] = t === 1 ? f32(x[i] - max) : f32(f32(x[i] - max) / tt);
}

// Top-k: the k largest logits, ties lower id first; -inf elsewhere.
function topK(x, k) {
  if (k >= x.length) return;
  const keep = new Uint8Array(x.length);
  for (const i of rankDescending(x).slice(0, k)) keep[i] = 1;
  for (let i = 0; i < x.length; i++) if (!keep[i]) x[i] = -Infinity;
}

// Top-p: the most likely tokens (ties lower id first) until their float64 mass, summed in
// order, reaches p - 1e-12; the first is always kept.
function topP(x, p) {
  if (p >= 1) return;
  const probs = softmax64(x);
  const order = rankDescending(probs);
  let before = 0;
  for (let j = 0; j < order.length; j++) {
    if (j > 0 && !(before < p - MASS_TOLERANCE)) x[order[j]] = -Infinity;
    before += probs[order[j]];
  }
}

// Min-p: the tokens with p >= min_p * max p (float64).
function minP(x, m) {
  if (!(m > 0)) return;
  const probs = softmax64(x);
  let top = 0;
  for (const v of probs) if (v > top) top = v;
  const threshold = m * top;
  for (let i = 0; i < x.length; i++) if (probs[i] < threshold) x[i] = -Infinity;
}

// log_softmax in float32 (chargen's closing step on float32 logits): x - log(sum exp x) with
// the sum and the log rounded to float32 and each result rounded to float32.
function logSoftmax32(x) {
  let max = -Infinity;
  for (const v of x) if (v > max) max = v;
  let sum = 0;
  for (const v of x) sum += Math.exp(f32(v - max));
  const logSum = f32(Math.log(f32(sum)));
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = f32(f32(x[i] - max) - logSum);
  return out;
}

// The log-probabilities (Float64Array, -Infinity for a removed token) of the distribution the
// next token is drawn from: the model's float32 logits through temperature, top-k, top-p and
// min-p, in that order (sampling.build_processors); greedy (T < 1e-12) is a one-hot on the
// first argmax.
export function logprobs(logits, cfg) {
  let best = 0;
  let live = false;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i];
    if (Number.isNaN(v) || v === Infinity) throw new Error("the model's scores are not finite numbers");
    if (v > -Infinity) live = true;
    if (v > logits[best]) best = i;
  }
  if (!live) throw new Error("the model's scores are not finite numbers");
  if (cfg.temperature < GREEDY_BELOW) {
    const out = new Float64Array(logits.length).fill(-Infinity);
    out[best] = 0;
    return out;
  }
  const x = Float32Array.from(logits);
  if (cfg.temperature !== 1) temperature(x, cfg.temperature);
  if (cfg.topK !== null) topK(x, cfg.topK);
  if (cfg.topP !== null) topP(x, cfg.topP);
  if (cfg.minP !== null) minP(x, cfg.minP);
  return logSoftmax32(x);
}

// The inverse-CDF draw (sampling.select_next): with c_i the float64 cumulative sum of exp(lp),
// the first i with c_i > max(u, 0) * c_last, never a token of probability 0. Returns
// {id, logprob, entropy} (nats; entropy of the distribution drawn from).
export function draw(lp, u) {
  const n = lp.length;
  const cdf = new Float64Array(n);
  let total = 0;
  let entropy = 0;
  let lastLive = 0;
  for (let i = 0; i < n; i++) {
    const p = Math.exp(lp[i]);
    total += p;
    cdf[i] = total;
    if (p > 0) {
      lastLive = i;
      entropy -= p * lp[i];
    }
  }
  const target = Math.max(u, 0) * total;
  let lo = 0;
  let hi = n; // first index with cdf > target (binary search, as searchsorted right)
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (cdf[mid] > target) hi = mid;
    else lo = mid + 1;
  }
  const id = Math.min(lo, lastLive);
  return { id, logprob: lp[id], entropy };
}
