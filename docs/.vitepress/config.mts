// The documentation site: the guides of docs/ and the API reference that TypeDoc writes into docs/api/
// (`npm run docs:api`, part of `npm run docs:build` and `docs:dev`). The build fails on a dead link
// (VitePress's default). Anchors are GitHub's, so that a guide's links work on GitHub and on the site alike.
import { readFileSync } from 'node:fs';
import { defineConfig, type DefaultTheme } from 'vitepress';
// @ts-expect-error: a plain ES module script without types
import { slug } from '../../scripts/readme-toc.mjs';

const apiSidebar: DefaultTheme.SidebarItem[] = JSON.parse(readFileSync(new URL('../api/typedoc-sidebar.json', import.meta.url), 'utf8'));
const repository = 'https://github.com/mikro-orm-coaster/mikro-orm-coaster';
// GitHub Pages serves a project site under /<repository>/ (.github/workflows/docs.yml sets it)
const base = process.env.DOCS_BASE ?? '/';

/** The guides, in reading order: the sidebar and the home page's list. */
const guides: DefaultTheme.SidebarItem[] = [
  { text: 'Getting started', link: '/getting-started' },
  { text: 'Race-safe inserts', link: '/race-safe-inserts' },
  { text: 'Batches', link: '/batches' },
  { text: 'Entity decorators', link: '/entity-decorators' },
  { text: 'Primary relationships', link: '/primary-relationships' },
  { text: 'Managed sessions', link: '/managed-sessions' },
  { text: 'Express, Fastify and NestJS', link: '/frameworks' },
  { text: 'Databases', link: '/databases' },
  { text: 'Troubleshooting', link: '/troubleshooting' },
  { text: 'Benchmark', link: '/benchmark' },
  { text: 'Contributing', link: '/contributing' },
];

export default defineConfig({
  title: 'mikro-orm-coaster',
  description: 'Race-safe inserts, timestamps, primary relationships and managed sessions for MikroORM 6',
  base,
  head: [['link', { rel: 'icon', type: 'image/svg+xml', href: `${base}logo.svg` }]],
  cleanUrls: true,
  lastUpdated: false,
  srcExclude: ['screenshots/**'],
  // build output under .tmp/ (git-ignored, and left out of the copy `npm run compat` makes while this builds)
  outDir: '../.tmp/site',
  cacheDir: '../.tmp/vitepress-cache',
  markdown: {
    anchor: { slugify: slug },
  },
  vite: {
    // the local search index of the guides and the API reference is one chunk of about 1 MB
    build: { chunkSizeWarningLimit: 2000 },
  },
  themeConfig: {
    logo: '/logo.svg',
    nav: [
      { text: 'Guide', link: '/getting-started', activeMatch: '^/(?!api/)' },
      { text: 'API', link: '/api/', activeMatch: '^/api/' },
      { text: 'Changelog', link: `${repository}/blob/main/CHANGELOG.md` },
    ],
    sidebar: {
      '/api/': [{ text: 'API reference', link: '/api/', items: apiSidebar }],
      '/': [
        { text: 'Guide', items: guides },
        { text: 'API reference', link: '/api/' },
      ],
    },
    outline: [2, 3],
    search: { provider: 'local' },
    socialLinks: [{ icon: 'github', link: repository }],
    footer: { message: 'Released under the MIT License.' },
  },
});
