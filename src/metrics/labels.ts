/**
 * Label values that clients (or future code) could multiply without bound are admitted here:
 * every Prometheus series lives in memory until the process exits, in this server and in the
 * scraper, so a client sending a fresh operation name per request must not grow either.
 */
export class BoundedLabel {
  private readonly known = new Set<string>();

  constructor(
    /** Distinct values kept; later ones are counted as `overflow`. */
    private readonly max: number,
    /** What a value that does not fit the pattern, or comes after `max` others, becomes. @default "other" */
    private readonly overflow = 'other',
    /** What a value must look like (GraphQL names by default), at most 64 characters. */
    private readonly pattern = /^[_A-Za-z][_0-9A-Za-z]{0,63}$/,
  ) {}

  /** The label for `value`: itself while it fits and the set has room (or already holds it). */
  of(value: string): string {
    if (this.known.has(value)) return value;
    if (!this.pattern.test(value) || this.known.size >= this.max) return this.overflow;
    this.known.add(value);
    return value;
  }

  /** Distinct values admitted so far. */
  get size(): number {
    return this.known.size;
  }
}
