import { execFileSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '..');

describe('the benchmark charts', () => {
  it("draw the tables of docs/benchmark.md as they are (npm run bench:chart redraws them)", () => {
    expect(() => execFileSync(process.execPath, [join(root, 'scripts/bench-chart.mjs'), '--check'], { stdio: 'pipe' })).not.toThrow();
  });
});
