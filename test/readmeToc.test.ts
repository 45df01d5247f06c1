import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
// @ts-expect-error: a plain ES module script without types
import { headings } from '../scripts/readme-toc.mjs';

const root = resolve(import.meta.dirname, '..');
const readme = readFileSync(join(root, 'README.md'), 'utf8');

describe("README's navigation", () => {
  it('has a table of contents that lists every section (node scripts/readme-toc.mjs writes it)', () => {
    expect(() => execFileSync(process.execPath, [join(root, 'scripts/readme-toc.mjs'), '--check'], { stdio: 'pipe' })).not.toThrow();
  });

  it('links only to headings that exist', () => {
    const anchors = new Set((headings(readme) as { anchor: string }[]).map(heading => heading.anchor));
    const links = [...readme.matchAll(/\]\(#([^)]+)\)/g)].map(match => match[1]);
    expect(links.length).toBeGreaterThan(20);
    expect(links.filter(link => !anchors.has(link))).toEqual([]);
  });
});
