// `npm run docs:check`: builds the documentation site (`npm run docs:build`: TypeDoc, whose warnings are errors,
// then VitePress, which fails on a dead link), serves it, and opens it in headless Chromium: the home page, a
// guide and an API page must render their title and every image with no console error and no failed request (one
// the page cancelled itself aside), and the search must find `failsafeAdd`. `--no-build` checks the site already
// built; `--screenshots` saves the home page and a guide as docs/screenshots/*.png. Chromium is Debian's
// `chromium` ($CHROMIUM_PATH names another); the check fails when there is none. .ci/run runs it beside `npm test`.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const dist = join(root, '.tmp/site');
const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
/** The pages opened, each with the heading it must show. */
const PAGES = [
  { path: '/', name: 'home', title: 'mikro-orm-coaster' },
  { path: '/race-safe-inserts', name: 'guide', title: 'Race-safe inserts' },
  { path: '/api/mikro-orm-coaster/classes/CoasterEntityManager', name: 'api', title: 'CoasterEntityManager' },
];
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml', '.png': 'image/png', '.json': 'application/json', '.woff2': 'font/woff2' };

if (!existsSync(executablePath)) {
  console.error(`docs:check: no Chromium at ${executablePath}: install it (Debian: apt-get install -y chromium) or set CHROMIUM_PATH.`);
  process.exit(1);
}
if (!process.argv.includes('--no-build')) {
  try {
    execFileSync('npm', ['run', 'docs:build'], { cwd: root, stdio: 'inherit' });
  } catch {
    console.error('docs:check: `npm run docs:build` failed (TypeDoc\'s warnings, or a dead link, above)');
    process.exit(1);
  }
}

/** Serves the built site as GitHub Pages does: `/guide` is guide.html, `/api/` is api/index.html, else 404. */
const server = createServer((request, response) => {
  const path = normalize(decodeURIComponent(new URL(request.url ?? '/', 'http://localhost').pathname));
  const candidates = [path, `${path}.html`, join(path, 'index.html')].map(file => join(dist, file));
  const file = candidates.find(candidate => candidate.startsWith(dist) && existsSync(candidate) && statSync(candidate).isFile());
  if (!file) {
    response.writeHead(404).end();
    return;
  }
  response.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' }).end(readFileSync(file));
});
await new Promise(resolve => server.listen(0, '127.0.0.1', () => resolve(undefined)));
const origin = `http://127.0.0.1:${server.address().port}`;

const browser = await chromium.launch({
  executablePath,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const problems = [];
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  let current = '';
  /** Requests still in flight (the search box imports the page of each result it shows, for its excerpt). */
  const pending = new Set();
  page.on('request', request => pending.add(request));
  page.on('requestfinished', request => pending.delete(request));
  page.on('requestfailed', request => pending.delete(request));
  page.on('console', message => message.type() === 'error' && problems.push(`${current}: console error: ${message.text()}`));
  page.on('pageerror', error => problems.push(`${current}: uncaught ${error.message}`));
  // A request the page itself cancelled (net::ERR_ABORTED: Vue replacing an element while its image loads, a
  // navigation leaving a page) is not a problem by itself: what it would have shown is checked below, every image
  // of every page loaded and every page rendered without an uncaught error. Any other failure is a problem.
  page.on('requestfailed', request => {
    const reason = request.failure()?.errorText ?? 'no reason given';
    if (reason !== 'net::ERR_ABORTED') {
      problems.push(`${current}: request failed (${reason}): ${request.url()}`);
    }
  });
  page.on('response', response => response.status() >= 400 && problems.push(`${current}: ${response.status()} for ${response.url()}`));
  /**
   * Waits up to 10 s for the requests in flight to end, reporting the ones that do not: after each page's
   * `networkidle` (its images may still be loading under CI's load, or be requested again after Vue replaced the
   * element) before its images are checked, and before the browser closes (the search box imports the page of every
   * result it shows, for its excerpt, after the results appear).
   */
  const settle = async () => {
    const deadline = Date.now() + 10_000;
    while (pending.size > 0 && Date.now() < deadline) {
      await page.waitForTimeout(50);
    }
    for (const request of pending) {
      problems.push(`${current}: request still running after 10 s: ${request.url()}`);
    }
    pending.clear();
  };
  for (const { path, name, title } of PAGES) {
    current = path;
    await page.goto(origin + path, { waitUntil: 'networkidle' });
    await settle();
    const broken = await page.locator('img').evaluateAll(images => images.filter(image => !image.complete || image.naturalWidth === 0).map(image => image.src));
    for (const src of broken) {
      problems.push(`${path}: the image ${src} did not load`);
    }
    const heading = (await page.locator('h1').first().textContent())?.trim() ?? '';
    if (!heading.includes(title)) {
      problems.push(`${path}: the first heading is "${heading}", not "${title}"`);
    }
    if (process.argv.includes('--screenshots') && name !== 'api') {
      await page.screenshot({ path: join(root, 'docs/screenshots', `${name}.png`) });
    }
  }
  current = 'search';
  await page.goto(origin, { waitUntil: 'networkidle' });
  await page.locator('.VPNavBarSearch button').click();
  await page.locator('.VPLocalSearchBox input').fill('failsafeAdd');
  const results = page.locator('.VPLocalSearchBox .results li');
  await results.first().waitFor({ timeout: 10_000 }).catch(() => problems.push('search: no result for failsafeAdd'));
  const texts = await results.allTextContents();
  if (!texts.some(text => text.includes('failsafeAdd'))) {
    problems.push(`search: no result for failsafeAdd mentions it (${texts.length} results)`);
  }
  await settle();
  await page.removeAllListeners();
  console.log(`docs:check: opened ${PAGES.map(page => page.path).join(', ')}; the search for failsafeAdd found ${texts.length} results`);
} finally {
  await browser.close();
  server.close();
}
if (problems.length > 0) {
  console.error(`docs:check failed:\n${problems.map(problem => `- ${problem}`).join('\n')}`);
  process.exit(1);
}
console.log('docs:check: passed');
