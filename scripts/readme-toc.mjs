// Writes README.md's table of contents (its ## and ### headings) between the <!-- toc --> markers.
// `node scripts/readme-toc.mjs --check` exits 1 instead when the table is out of date (test/readmeToc.test.ts).
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const readme = join(dirname(dirname(fileURLToPath(import.meta.url))), 'README.md');
const START = '<!-- toc -->';
const END = '<!-- /toc -->';

/**
 * GitHub's slug of a heading's text: lower case, punctuation dropped, spaces to hyphens. The site
 * (docs/.vitepress/config.mts) uses it too, so that an anchor works on GitHub and on the site alike.
 */
export function slug(heading) {
  return heading
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

/** GitHub's anchor for a heading: its slug, repeats numbered. */
function anchor(heading, seen) {
  const base = slug(heading);
  const count = seen.get(base) ?? 0;
  seen.set(base, count + 1);
  return count === 0 ? base : `${base}-${count}`;
}

/** Every heading of `text` outside code blocks, with its level and GitHub anchor. */
export function headings(text) {
  const seen = new Map();
  const found = [];
  let fenced = false;
  for (const line of text.split('\n')) {
    if (line.startsWith('```')) {
      fenced = !fenced;
    }
    const match = !fenced && /^(#{1,6}) (.+)$/.exec(line);
    if (match) {
      found.push({ level: match[1].length, title: match[2], anchor: anchor(match[2], seen) });
    }
  }
  return found;
}

/** The table of contents of `text`: its level 2 and 3 headings, linked. */
export function tableOfContents(text) {
  return headings(text)
    .filter(({ level }) => level === 2 || level === 3)
    .filter(({ title }) => title !== 'Contents')
    .map(({ level, title, anchor: id }) => `${level === 2 ? '-' : '  -'} [${title}](#${id})`)
    .join('\n');
}

function main() {

  const text = readFileSync(readme, 'utf8');
  const start = text.indexOf(START);
  const end = text.indexOf(END);
  if (start < 0 || end < start) {
    console.error(`README.md has no ${START} ... ${END} markers`);
    process.exit(1);
  }
  const updated = `${text.slice(0, start + START.length)}\n${tableOfContents(text)}\n${text.slice(end)}`;
  if (process.argv.includes('--check')) {
    if (updated !== text) {
      console.error('README.md\'s table of contents is out of date: run `node scripts/readme-toc.mjs`.');
      process.exit(1);
    }
  } else {
    writeFileSync(readme, updated);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main();
}
