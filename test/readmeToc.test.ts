import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
// @ts-expect-error: a plain ES module script without types
import { headings } from '../scripts/readme-toc.mjs';

const root = resolve(import.meta.dirname, '..');
/** README.md and the guides of docs/, by their path from the repository's root. */
const files = ['README.md', ...readdirSync(join(root, 'docs')).filter(name => name.endsWith('.md')).map(name => `docs/${name}`)];
const texts = new Map(files.map(file => [file, readFileSync(join(root, file), 'utf8')]));

/** The anchors of a Markdown file's headings, as GitHub (and the site, see docs/.vitepress/config.mts) makes them. */
function anchorsOf(file: string): Set<string> {
  return new Set((headings(texts.get(file) ?? readFileSync(join(root, file), 'utf8')) as { anchor: string }[]).map(heading => heading.anchor));
}

/** Every link target of a Markdown text outside code: `[text](target)` and `<img src="target">`. */
function linksOf(text: string): string[] {
  const prose = text.replace(/^```[\s\S]*?^```/gm, '').replace(/`[^`\n]*`/g, '');
  return [...prose.matchAll(/\]\(([^)\s]+)\)|<img [^>]*src="([^"]+)"/g)].map(match => match[1] ?? match[2]);
}

/** The lines of `file`'s section under `heading`, up to the next heading of its level or above. */
function section(file: string, heading: string): string[] {
  const lines = (texts.get(file) ?? '').split('\n');
  const start = lines.indexOf(heading);
  const depth = heading.indexOf(' ');
  const end = lines.findIndex((line, i) => i > start && /^#+ /.test(line) && line.indexOf(' ') <= depth);
  return start < 0 ? [] : lines.slice(start, end < 0 ? undefined : end);
}

describe("README's and docs/'s navigation", () => {
  it('has the parts README shares with the guides word for word in both', () => {
    // the first table of a section
    const table = (lines: string[]) => {
      const start = lines.findIndex(line => line.startsWith('|'));
      const end = lines.findIndex((line, i) => i > start && !line.startsWith('|'));
      return lines.slice(start, end < 0 ? undefined : end);
    };
    expect(section('README.md', '## When to use it').length).toBeGreaterThan(5);
    expect(section('docs/index.md', '## When to use it').join('\n').trim()).toBe(section('README.md', '## When to use it').join('\n').trim());
    expect(section('README.md', '## Quick start').length).toBeGreaterThan(5);
    expect(section('docs/getting-started.md', '## Quick start').join('\n').trim()).toBe(section('README.md', '## Quick start').join('\n').trim());
    expect(table(section('README.md', '## Compatibility')).length).toBeGreaterThan(5);
    expect(table(section('docs/databases.md', '## Compatibility'))).toEqual(table(section('README.md', '## Compatibility')));
  });

  it('has a table of contents in README that lists every section (node scripts/readme-toc.mjs writes it)', () => {
    expect(() => execFileSync(process.execPath, [join(root, 'scripts/readme-toc.mjs'), '--check'], { stdio: 'pipe' })).not.toThrow();
  });

  it('links only to files and headings that exist', () => {
    const dead: string[] = [];
    let count = 0;
    for (const [file, text] of texts) {
      for (const link of linksOf(text)) {
        if (/^[a-z]+:/.test(link)) {
          continue; // https: and mailto: links leave the repository
        }
        count++;
        const [path, anchor] = link.split('#');
        const target = path === '' ? file : normalize(join(dirname(file), path));
        if (!existsSync(join(root, target))) {
          dead.push(`${file}: ${link} (no file ${target})`);
        } else if (anchor !== undefined && !(target.endsWith('.md') && anchorsOf(target).has(anchor))) {
          dead.push(`${file}: ${link} (no heading #${anchor} in ${target})`);
        }
      }
    }
    expect(count).toBeGreaterThan(100);
    expect(dead).toEqual([]);
  });
});
