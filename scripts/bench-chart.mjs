// `npm run bench:chart [-- file]`: draws the tables that `npm run bench` prints as bar charts, one SVG per table
// with ratios (docs/images/bench-<table>.svg): each case's ratio to its baseline, the baseline at 1, the target
// marked, the bar green when the target is met, red when it is not, grey for cases without one. It reads the
// bench output pasted into docs/benchmark.md (the default), or a file of `npm run bench`'s raw output, so the
// charts always show the numbers of the tables beside them. `--check` writes nothing and exits 1 when a chart
// differs from the one the file gives (test/benchChart.test.ts).
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const images = join(root, 'docs/images');

/** The tables of `console.table` output in `text`: each with the line above it as its title. */
export function parseTables(text) {
  const lines = text.split('\n');
  const tables = [];
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i].startsWith('┌')) {
      continue;
    }
    let t = i - 1;
    while (t >= 0 && lines[t].trim() === '') t--;
    const cells = line => line.split('│').slice(1, -1).map(cell => cell.trim().replace(/^(['"])(.*)\1$/, '$2'));
    const header = cells(lines[i + 1]);
    const rows = [];
    let j = i + 3;
    for (; !lines[j].startsWith('└'); j++) {
      rows.push(Object.fromEntries(cells(lines[j]).map((cell, k) => [header[k], cell])));
    }
    tables.push({ title: lines[t].trim(), rows });
    i = j;
  }
  return tables;
}

/** A file name for a table: its title up to the first comma or colon, without parentheses, then more if taken. */
function nameOf(title, taken) {
  const parts = title.split(/[,:]/).map(part => part.replace(/\([^)]*\)/g, '').trim().toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, ''));
  let name = parts[0];
  for (let k = 1; taken.has(name) && k < parts.length; k++) {
    name = `${name}-${parts[k]}`;
  }
  taken.add(name);
  return `bench-${name}.svg`;
}

const escape = text => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** The bars of a table: a label, the ratio, the target (if any) and whether it was met. */
function barsOf(table) {
  return table.rows.flatMap(row => {
    if (row.ratio !== undefined) {
      return [{ label: `${row.case} — vs ${row.baseline}`, value: Number(row.ratio), target: row.target ? Number(row.target.replace(/[^\d.]/g, '')) : undefined, met: row.met, below: true }];
    }
    if (row['vs floor'] !== undefined) {
      return [{ label: `${row.operation} — ${row['ops/s']} ops/s`, value: Number(row['vs floor']), target: row.target ? Number(row.target.replace(/[^\d.]/g, '')) : undefined, met: row.target ? (Number(row['vs floor']) >= Number(row.target.replace(/[^\d.]/g, '')) ? 'yes' : 'NO') : '', below: false }];
    }
    return [];
  });
}

/** The SVG of one table's bars. */
export function chart(table) {
  const bars = barsOf(table);
  const width = 760;
  const left = 16;
  const plot = width - left - 70;
  const rowHeight = 42;
  const top = 58;
  const height = top + bars.length * rowHeight + 34;
  const max = Math.max(1, ...bars.flatMap(bar => [bar.value, bar.target ?? 0])) * 1.08;
  const x = value => left + (value / max) * plot;
  const lowerIsBetter = bars.some(bar => bar.below);
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" font-family="system-ui, -apple-system, 'Segoe UI', sans-serif" role="img" aria-label="${escape(table.title)}">`,
    `<rect width="${width}" height="${height}" rx="8" fill="#ffffff" stroke="#d0d7de"/>`,
    `<text x="${left}" y="24" font-size="14" font-weight="600" fill="#1f2328">${escape(table.title)}</text>`,
    `<text x="${left}" y="42" font-size="11" fill="#59636e">${lowerIsBetter ? 'ratio to the baseline (1 = as fast as it; lower is faster)' : 'throughput as a share of the floor (1 = the floor; higher is faster)'} · ▲ target · green met, red missed</text>`,
  ];
  bars.forEach((bar, i) => {
    const y = top + i * rowHeight;
    const fill = bar.met === 'yes' ? '#2da44e' : bar.met === 'NO' ? '#cf222e' : '#8c959f';
    out.push(`<text x="${left}" y="${y + 11}" font-size="11.5" fill="#1f2328">${escape(bar.label)}</text>`);
    out.push(`<rect x="${left}" y="${y + 16}" width="${Math.max(1, x(bar.value) - left).toFixed(1)}" height="14" rx="2" fill="${fill}"/>`);
    out.push(`<text x="${(x(bar.value) + 6).toFixed(1)}" y="${y + 27}" font-size="11.5" fill="#1f2328">${bar.value.toFixed(2)}</text>`);
    if (bar.target !== undefined) {
      const tx = x(bar.target).toFixed(1);
      out.push(`<path d="M${tx} ${y + 32} l-5 8 h10 z" fill="#1f2328"><title>target ${bar.target}</title></path>`);
    }
  });
  const axis = top + bars.length * rowHeight;
  out.push(`<line x1="${x(1).toFixed(1)}" y1="${top - 6}" x2="${x(1).toFixed(1)}" y2="${axis}" stroke="#1f2328" stroke-dasharray="3 3"/>`);
  out.push(`<text x="${x(1).toFixed(1)}" y="${axis + 16}" font-size="11" fill="#1f2328" text-anchor="middle">1 (${lowerIsBetter ? 'baseline' : 'floor'})</text>`);
  out.push('</svg>', '');
  return out.join('\n');
}

/** The charts the tables of `text` give: file name and SVG, for the tables that have ratios. */
export function charts(text) {
  const taken = new Set();
  return parseTables(text)
    .filter(table => barsOf(table).length > 0)
    .map(table => ({ file: join(images, nameOf(table.title, taken)), svg: chart(table) }));
}

function main() {
  const input = process.argv.slice(2).find(arg => !arg.startsWith('--')) ?? join(root, 'docs/benchmark.md');
  const wanted = charts(readFileSync(input, 'utf8'));
  if (process.argv.includes('--check')) {
    const stale = wanted.filter(({ file, svg }) => !existsSync(file) || readFileSync(file, 'utf8') !== svg);
    if (stale.length > 0) {
      console.error(`Out of date: ${stale.map(({ file }) => relative(root, file)).join(', ')}: run \`npm run bench:chart\`.`);
      process.exit(1);
    }
    return;
  }
  for (const { file, svg } of wanted) {
    writeFileSync(file, svg);
    console.log(`wrote ${relative(root, file)}`);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main();
}
