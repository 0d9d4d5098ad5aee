// A deterministic pseudo-random sequence in [0, 1) for randomized tests: a seed replays a failure.
export function prng(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    return s / 0x7fffffff;
  };
}
